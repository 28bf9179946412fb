// Folio's API documentation: every service's OpenAPI document, fetched through the
// gateway, in one Swagger UI with a service picker. All files are served by the
// gateway itself; nothing is loaded from the internet.
window.ui = SwaggerUIBundle({
  urls: [
    { url: "/docs/openapi/book.json", name: "book service (/books)" },
    { url: "/docs/openapi/author.json", name: "author service (/authors)" },
    { url: "/docs/openapi/auth.json", name: "auth service (/auth, /.well-known)" },
    { url: "/docs/openapi/notify.json", name: "notify service (/subscriptions)" },
    { url: "/docs/openapi/inventory.json", name: "inventory service (/inventory)" },
    { url: "/docs/openapi/order.json", name: "order service (/orders)" },
    { url: "/openapi.json", name: "gateway (operational endpoints)" }
  ],
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
});
