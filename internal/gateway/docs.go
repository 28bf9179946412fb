package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"folio/internal/platform/problem"
)

// docsUI holds Swagger UI and Folio's page around it (see docsui/README.md).
//
//go:embed docsui
var docsUI embed.FS

// docsRoutes registers the API documentation: GET /docs is one page showing every
// service's OpenAPI document, each fetched through the gateway from the service.
func (g *Gateway) docsRoutes(mux *http.ServeMux) {
	files, _ := fs.Sub(docsUI, "docsui")
	static := http.StripPrefix("/docs/", http.FileServerFS(files))
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	})
	mux.Handle("GET /docs/", static)
	mux.HandleFunc("GET /docs/openapi/{file}", g.handleDocsSpec)
}

// handleDocsSpec serves GET /docs/openapi/{service}.json: the service's own
// /openapi.json, from one of its instances.
func (g *Gateway) handleDocsSpec(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	svc, known := g.services[name]
	if !ok || !known {
		problem.Write(w, r, problem.Problem{Type: problem.TypeNotFound, Status: http.StatusNotFound,
			Detail: "no service has this name"})
		return
	}
	out := r.Clone(r.Context())
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery = "/openapi.json", "", ""
	// The documents are public, and the services need no caller for them.
	out.Header.Del("Authorization")
	svc.proxy.ServeHTTP(w, out)
}
