package chassis

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckTimeout bounds the whole check. /readyz gives its own database check
// 2 s, so a slow but answering program still gets its answer through; a container
// runtime's health check timeout (Compose: timeout) should be longer than this.
const healthcheckTimeout = 3 * time.Second

// IsHealthcheckFlag reports whether args (a program's os.Args) ask it to check the
// program already running beside it instead of starting one: "--healthcheck",
// "-healthcheck" or "healthcheck", as release.IsVersionFlag reads --version.
//
// The images are built FROM scratch, with no shell and no curl, so a container
// runtime's health check (Compose's healthcheck, podman's) runs the program itself:
// ["CMD", "/program", "--healthcheck"].
func IsHealthcheckFlag(args []string) bool {
	return len(args) == 2 && (args[1] == "--healthcheck" || args[1] == "-healthcheck" || args[1] == "healthcheck")
}

// Healthcheck asks the program listening at FOLIO_HTTP_ADDR (defaultAddr, as the
// program's Check fills it in, when unset) whether it is ready: a GET of /readyz on
// loopback when the address names every interface or none. It returns nil on 200
// and prints the URL that answered; otherwise an error saying why (the status and
// the start of the answer, or why nothing answered), for the caller to print before
// it exits 1.
func Healthcheck(ctx context.Context, getenv func(string) string, defaultAddr string, stdout io.Writer) error {
	addr := getenv("FOLIO_HTTP_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	url, err := readyURL(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// The program is on this machine: no proxy from the environment, no connection
	// kept for a next request that never comes.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The problem document of a 503 says what is missing ("the service cannot
		// reach its database"); the runtime keeps this output in its health log.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("healthcheck: GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stdout, "ready: GET %s: %s\n", url, resp.Status)
	return nil
}

// readyURL is the URL of /readyz for a program listening at addr, on loopback when
// addr's host is empty or unspecified (0.0.0.0, [::]): those are what a program is
// told to listen on, not addresses to connect to.
func readyURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("FOLIO_HTTP_ADDR %q: %w", addr, err)
	}
	if port == "0" || port == "" {
		return "", fmt.Errorf("FOLIO_HTTP_ADDR %q names no port to ask: the program chose one (FOLIO_ADDR_FILE says which)", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
