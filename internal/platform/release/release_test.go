package release

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	checkout := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "folio", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3d0880e1c2b4a5d6e7f8091a2b3c4d5e6f708192"},
			{Key: "vcs.time", Value: "2026-12-02T16:28:40Z"}, {Key: "vcs.modified", Value: "true"}}}
	tagged := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "folio", Version: "v1.4.0"}}
	for _, tc := range []struct {
		name    string
		bi      *debug.BuildInfo
		stamped string
		want    string
	}{
		{"a build from a checkout", checkout, "", "devel (revision 3d0880e1c2b4, 2026-12-02T16:28:40Z, modified) go1.26.8"},
		{"a release build stamped with -ldflags", checkout, "v1.2.3", "v1.2.3 (revision 3d0880e1c2b4, 2026-12-02T16:28:40Z, modified) go1.26.8"},
		{"a build of a tagged module", tagged, "", "v1.4.0 go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.bi, tc.stamped).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIsVersionFlag(t *testing.T) {
	for args, want := range map[string]bool{"--version": true, "-version": true, "version": true, "--help": false, "": false} {
		a := []string{"book"}
		if args != "" {
			a = append(a, args)
		}
		if got := IsVersionFlag(a); got != want {
			t.Errorf("IsVersionFlag(%q) = %v, want %v", a, got, want)
		}
	}
	if IsVersionFlag([]string{"book", "--version", "extra"}) {
		t.Error("--version with more arguments is not a version request")
	}
}
