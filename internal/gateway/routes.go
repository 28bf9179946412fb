package gateway

import "net/http"

// Routes registers every proxied path of the public contract, the RPC procedures
// (rpcRoutes), and the API documentation at /docs, on mux. Paths that are not listed get the chassis' 404
// problem.
func (g *Gateway) Routes(mux *http.ServeMux) {
	for _, r := range routeTable {
		mux.Handle(r.pattern, g.handleProxy(g.services[r.service]))
	}
	g.rpcRoutes(mux)
	g.docsRoutes(mux)
}

// routeTable maps path prefixes to the services that own them.
var routeTable = []struct{ pattern, service string }{
	{"/books", ServiceBook},
	{"/books/", ServiceBook},
	{"/authors", ServiceAuthor},
	{"/authors/", ServiceAuthor},
	{"/auth", ServiceAuth},
	{"/auth/", ServiceAuth},
	{"/.well-known/", ServiceAuth},
	{"/subscriptions", ServiceNotify},
	{"/subscriptions/", ServiceNotify},
	{"/inventory", ServiceInventory},
	{"/inventory/", ServiceInventory},
	{"/orders", ServiceOrder},
	{"/orders/", ServiceOrder},
}
