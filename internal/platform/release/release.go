// Package release says which build of Folio a program is: its version, the git
// revision it was built from and the Go that built it, as the toolchain stamped
// them into the binary, or as a release build sets them with -ldflags.
package release

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	// The container images hold no zoneinfo: every program carries its own.
	_ "time/tzdata"
)

// version is set by a release build:
//
//	go build -ldflags "-X folio/internal/platform/release.version=v1.2.3" ./cmd/...
//
// Otherwise the module version the toolchain stamped is used (a build of a tagged
// module), or "devel" for a build from a checkout.
var version string

// Info is what is known of the running build.
type Info struct {
	Version   string // "v1.2.3", or "devel"
	Revision  string // the git commit, "" when the build was not made in a checkout
	Time      string // the commit's time (RFC 3339), "" likewise
	Modified  bool   // the checkout had uncommitted changes
	GoVersion string
}

// Get returns the running build's Info.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: orDevel(version), GoVersion: runtime.Version()}
	}
	return fromBuildInfo(bi, version)
}

func fromBuildInfo(bi *debug.BuildInfo, stamped string) Info {
	info := Info{Version: stamped, GoVersion: bi.GoVersion}
	if info.Version == "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	info.Version = orDevel(info.Version)
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

func orDevel(v string) string {
	if v == "" {
		return "devel"
	}
	return v
}

// String is the line a program prints for --version: "book v1.2.3 (revision
// 3d0880e1c2b4, 2026-12-02T16:28:40Z, modified) go1.26.8" for program "book".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	var about []string
	if i.Revision != "" {
		about = append(about, "revision "+i.Revision[:min(12, len(i.Revision))])
	}
	if i.Time != "" {
		about = append(about, i.Time)
	}
	if i.Modified {
		about = append(about, "modified")
	}
	if len(about) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(about, ", "))
	}
	b.WriteString(" " + i.GoVersion)
	return b.String()
}

// IsVersionFlag reports whether args (a program's os.Args) ask only for its
// version: "--version", "-version" or "version".
func IsVersionFlag(args []string) bool {
	return len(args) == 2 && (args[1] == "--version" || args[1] == "-version" || args[1] == "version")
}
