package e2e

// The bad-input sweep of issue 8: every route of the book, author, auth, notify,
// inventory, payment and order services, taken from each service's own /openapi.json (a new route is swept
// without a change here), called through the gateway and directly with input an
// attacker or a broken client sends. Whatever the input: no 5xx, no hang, and every
// 4xx is a problem+json.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// badRoute is one operation of a service's OpenAPI document.
type badRoute struct {
	service, method, path string
	contentType           string            // of its request body; "" when it takes none
	props                 map[string]string // the body's properties and their JSON types
	query                 []string          // its query parameters
	headers               []string          // its header parameters
}

// badRequest is one request of the sweep.
type badRequest struct {
	name, method, url, contentType string
	body                           []byte
	chunked                        bool // send the body without a length
	header                         map[string]string
}

func TestBadInput(t *testing.T) {
	u := startFolioUp(t)
	for i := 1; i <= badAddrs; i++ {
		upRequireAddr(t, badAddr(i))
	}
	admin := bearer(u.login(u.adminEmail, u.adminPassword))
	// The gateway budgets a verified caller by its subject: the sweep's requests with
	// a token are spread over several admins, so that they test the input rather
	// than the rate limit.
	admins := []string{admin}
	for i := range 11 {
		email := fmt.Sprintf("sweep-%d-%s@folio.test", i, randomTag())
		r := call(t, "POST", u.URL("auth")+"/auth/register", map[string]any{"email": email, "password": "correct-horse-battery"})
		expect(t, r, http.StatusCreated)
		expect(t, call(t, "PUT", u.URL("auth")+"/auth/users/"+r.json(t)["id"].(string)+"/roles", map[string]any{"roles": []string{"admin"}},
			"Authorization", admin), http.StatusOK)
		admins = append(admins, bearer(u.login(email, "correct-horse-battery")))
	}
	var routes []badRoute
	for _, svc := range []string{"book", "author", "auth", "notify", "inventory", "payment", "order"} {
		routes = append(routes, openAPIRoutes(t, svc, u.URL(svc))...)
	}
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in the services' OpenAPI documents", len(routes))
	}

	var reqs []badRequest
	for _, rt := range routes {
		for _, gateway := range []bool{false, true} {
			base := u.URL(rt.service)
			if gateway {
				base = u.URL("gateway")
			}
			for _, auth := range []string{"", admin} {
				reqs = append(reqs, badRequests(rt, base, auth)...)
			}
		}
	}
	t.Logf("%d routes", len(routes))

	// Requests whose framing is sound, with bad content: each answered by Folio's
	// own handlers and middleware.
	t.Run("content", func(t *testing.T) { badInputContent(t, reqs, admin, admins) })

	// Requests refused for their framing: oversized headers, conflicting or
	// duplicate lengths, malformed chunks, a transfer coding nobody knows.
	t.Run("framing", func(t *testing.T) { badInputFraming(t, u, routes, admin) })
}

// badInputContent sends reqs, requests whose framing is sound with bad content,
// each answered by Folio's own handlers and middleware, from eight workers; a
// request with admin's token is sent with one of admins' instead.
func badInputContent(t *testing.T, reqs []badRequest, admin string, admins []string) {
	clients := make([]*http.Client, badAddrs+1)
	for i := 1; i <= badAddrs; i++ {
		// Requests come from many loopback addresses, so that the gateway's per-client
		// rate limit leaves room for the sweep (a 429 would be no failure, only less
		// of a test).
		clients[i] = upClient(badAddr(i), 15*time.Second)
	}
	var mu sync.Mutex
	failures := badFailures{}
	statuses := map[int]int{}
	limited := map[string]int{} // 429s by route: answers that tested a rate limit, not the input
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := reqs[i]
				if r.header["Authorization"] == admin {
					r.header = maps.Clone(r.header)
					r.header["Authorization"] = admins[i%len(admins)]
				}
				status, ct, body, err := r.do(clients[1+i%badAddrs])
				// 503 /problems/busy is the auth service's documented answer while all
				// its password-check slots are taken (likelier on a loaded machine):
				// "retry later", which the sweep does, as a client should, to see how
				// the input itself is answered. Off the test's goroutine, so
				// polltest.Wait, which reports rather than fails: the last answer is
				// checked below whatever it was.
				if err == nil && status == http.StatusServiceUnavailable && strings.Contains(body, `"/problems/busy"`) {
					_, _ = polltest.Wait(polltest.Deadline, func() error {
						status, ct, body, err = r.do(clients[1+i%badAddrs])
						if err == nil && status == http.StatusServiceUnavailable && strings.Contains(body, `"/problems/busy"`) {
							return errors.New("busy")
						}
						return nil
					})
				}
				mu.Lock()
				statuses[status]++
				if status == http.StatusTooManyRequests {
					limited[r.method+" "+strings.SplitN(strings.SplitN(r.url, "/", 4)[3], "?", 2)[0]]++
				}
				failures.check(r.name, upDescribe(r.method, r.url), status, ct, body, err)
				mu.Unlock()
			}
		}()
	}
	began := time.Now()
	for i := range reqs {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("%d requests in %s; answers by status: %v; 429 by route: %v", len(reqs), time.Since(began).Round(time.Millisecond), statuses, limited)
	failures.report(t)
}

// protocolAnswers are the requests of badInputFraming that Go's HTTP server
// answers itself, in plain text, before a request exists for Folio's code to
// answer: net/http has no hook for them. Those must be exactly the status the
// protocol asks for — 431, 400, and 501 for a transfer coding the server does not
// implement (RFC 9112, section 6.1) — and nothing else may slip past the sweep's
// rules.
var protocolAnswers = map[string]int{
	"100 KiB header":                     http.StatusRequestHeaderFieldsTooLarge,
	"two Content-Lengths":                http.StatusBadRequest,
	"Transfer-Encoding it does not know": http.StatusNotImplemented,
}

// badInputFraming sends to every route, directly and through the gateway,
// requests refused for their framing: oversized headers, conflicting or duplicate
// lengths, malformed chunks, a transfer coding nobody knows.
func badInputFraming(t *testing.T, u *upSystem, routes []badRoute, admin string) {
	failures := badFailures{}
	check := func(name, request string, status int, ct, body string, err error) {
		if want, ok := protocolAnswers[name]; ok && err == nil {
			if status != want {
				k := fmt.Sprintf("%s: %d, want Go's %d", name, status, want)
				failures[k] = append(failures[k], fmt.Sprintf("%s: %.100q", request, body))
			}
			return
		}
		failures.check(name, request, status, ct, body, err)
	}
	for _, rt := range routes {
		for _, base := range []string{u.URL(rt.service), u.URL("gateway")} {
			path := strings.ReplaceAll(rt.path, "{id}", badIDs[0])
			r := badRequest{name: "100 KiB header", method: rt.method, url: base + path,
				header: map[string]string{"Authorization": admin, "X-Padding": strings.Repeat("p", 100<<10)}}
			status, ct, body, err := r.do(client)
			check(r.name, upDescribe(r.method, r.url), status, ct, body, err)
			if rt.contentType == "" {
				continue
			}
			head := rt.method + " " + path + " HTTP/1.1\r\nHost: folio\r\nAuthorization: " + admin + "\r\nContent-Type: " + rt.contentType + "\r\nConnection: close\r\n"
			for name, req := range map[string]string{
				"Content-Length and Transfer-Encoding": head + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: folio\r\n\r\n",
				"two Content-Lengths":                  head + "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
				"malformed chunk":                      head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
				"Transfer-Encoding it does not know":   head + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
			} {
				status, ct, body := upRaw(t, upHostPort(base), req)
				check(name, upDescribe(rt.method, base+path), status, ct, body, nil)
			}
		}
	}
	failures.report(t)
}

// badFailures are the sweep's bad answers, by kind.
type badFailures map[string][]string

// check records the answer to one request if it breaks a rule: an answer at all,
// no 5xx, every 4xx a problem+json.
func (f badFailures) check(name, request string, status int, contentType, body string, err error) {
	where := name + ": " + request
	switch {
	case err != nil:
		f["with no answer (hang or broken connection)"] = append(f["with no answer (hang or broken connection)"], fmt.Sprintf("%s: %v", where, err))
	case status >= 500:
		k := fmt.Sprintf("%d", status)
		f[k] = append(f[k], fmt.Sprintf("%s: %.200s", where, body))
	case status >= 400 && contentType != "application/problem+json":
		k := fmt.Sprintf("%d not problem+json", status)
		f[k] = append(f[k], fmt.Sprintf("%s: Content-Type %q, body %.100q", where, contentType, body))
	}
}

func (f badFailures) report(t *testing.T) {
	t.Helper()
	kinds := make([]string, 0, len(f))
	for k := range f {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ex := f[k]
		sort.Strings(ex)
		t.Errorf("%d answers %s; for example:\n  %s", len(ex), k, strings.Join(ex[:min(len(ex), 8)], "\n  "))
	}
}

// badAddrs is how many loopback source addresses the sweep spreads its requests over.
const badAddrs = 64

func badAddr(i int) string { return "127.0.1." + strconv.Itoa(i) }

// do sends r and returns the answer's status, Content-Type and the start of its body.
func (r badRequest) do(c *http.Client) (int, string, string, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
		if r.chunked {
			body = struct{ io.Reader }{body}
		}
	}
	req, err := http.NewRequest(r.method, r.url, body)
	if err != nil {
		return 0, "", "", fmt.Errorf("build request: %w", err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, "", "", fmt.Errorf("read the answer of %d: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b), nil
}

// openAPIRoutes reads the operations of the service at base from its /openapi.json.
func openAPIRoutes(t *testing.T, service, base string) []badRoute {
	t.Helper()
	r := call(t, "GET", base+"/openapi.json", nil)
	expect(t, r, http.StatusOK)
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("%s's /openapi.json: %v", service, err)
	}
	// resolve follows a local $ref ("#/components/schemas/X").
	resolve := func(v any) map[string]any {
		m, _ := v.(map[string]any)
		for range 10 {
			ref, ok := m["$ref"].(string)
			if !ok {
				break
			}
			var cur any = doc
			for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
				cm, _ := cur.(map[string]any)
				cur = cm[part]
			}
			m, _ = cur.(map[string]any)
		}
		return m
	}
	var routes []badRoute
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		ops, _ := item.(map[string]any)
		for method, op := range ops {
			if !strings.Contains("get post put patch delete", method) || method == "" {
				continue
			}
			rt := badRoute{service: service, method: strings.ToUpper(method), path: path, props: map[string]string{}}
			opm := resolve(op)
			params, _ := opm["parameters"].([]any)
			shared, _ := ops["parameters"].([]any)
			for _, p := range append(params, shared...) {
				pm := resolve(p)
				name, _ := pm["name"].(string)
				switch pm["in"] {
				case "query":
					rt.query = append(rt.query, name)
				case "header":
					rt.headers = append(rt.headers, name)
				}
			}
			if rb := resolve(opm["requestBody"]); rb != nil {
				content, _ := rb["content"].(map[string]any)
				for ct, media := range content {
					rt.contentType = ct
					mm, _ := media.(map[string]any)
					schema := resolve(mm["schema"])
					props, _ := schema["properties"].(map[string]any)
					for name, p := range props {
						typ, _ := resolve(p)["type"].(string)
						rt.props[name] = typ
					}
				}
			}
			routes = append(routes, rt)
		}
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].path+routes[i].method < routes[j].path+routes[j].method })
	return routes
}

// badIDs are path ids no service made: unknown, not ids, escapes of NUL and invalid
// UTF-8, long, traversal.
var badIDs = []string{
	"00000000-0000-4000-8000-000000000000", "not-an-id", "%00", "%FF%FE", "a%00b", "%E2%80%8B%E2%80%AE",
	"..%2F..%2Fopenapi.json", "-1", "%22%27%3Cscript%3E", strings.Repeat("9", 4000),
}

// badValues are query values: NUL, invalid UTF-8, numbers out of range, long, garbage.
var badValues = []string{"%00", "%FF%FE", "-1", "abc", "99999999999999999999", "1e400", strings.Repeat("x", 4000), "eyJpZCI6MX0", "%22%7B%5B"}

// badRequests are the requests of the sweep for one route at base, with auth (an
// Authorization value) or none.
func badRequests(rt badRoute, base, auth string) []badRequest {
	var out []badRequest
	header := func(extra ...string) map[string]string {
		h := map[string]string{}
		if auth != "" {
			h["Authorization"] = auth
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	tag := "without a token"
	if auth != "" {
		tag = "with a token"
	}
	path := strings.ReplaceAll(rt.path, "{id}", badIDs[0])
	add := func(name, p, contentType string, body []byte, h map[string]string) {
		out = append(out, badRequest{name: name + " " + tag, method: rt.method, url: base + p, contentType: contentType, body: body, header: h})
	}
	if strings.Contains(rt.path, "{id}") {
		for _, id := range badIDs[1:] {
			var body []byte
			if rt.contentType != "" {
				body = []byte("{}")
			}
			add("bad id", strings.ReplaceAll(rt.path, "{id}", id), rt.contentType, body, header())
		}
	}
	for _, q := range rt.query {
		for _, v := range badValues {
			add("bad query "+q, path+"?"+q+"="+v, "", nil, header())
		}
	}
	for _, h := range rt.headers {
		if h == "Authorization" {
			continue
		}
		for _, v := range []string{"garbage", `"`, `W/"x", *`, strings.Repeat("k", 8000), "\xff\xfe"} {
			var body []byte
			if rt.contentType != "" {
				body = []byte("{}")
			}
			add("bad header "+h, path, rt.contentType, body, header(h, v))
		}
	}
	if auth == "" {
		// Bad tokens, on every route (once: they take the place of the good one).
		for _, v := range []string{"Bearer", "Bearer x.y.z", "Basic YTpi", "Bearer " + strings.Repeat("A", 6000), "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."} {
			out = append(out, badRequest{name: "bad token", method: rt.method, url: base + path, header: map[string]string{"Authorization": v}})
		}
	}
	if rt.contentType == "" {
		return out
	}
	bodies := map[string][]byte{
		"empty body":          {},
		"malformed JSON 1":    []byte(`{"a":`),
		"malformed JSON 2":    []byte(`{"a" 1}`),
		"malformed JSON 3":    []byte(`{'a':1}`),
		"trailing data":       []byte(`{}{}`),
		"top-level array":     []byte(`[]`),
		"top-level string":    []byte(`"x"`),
		"top-level null":      []byte(`null`),
		"top-level number":    []byte(`1e400`),
		"raw NUL":             []byte("{\"a\":\"\x00\"}\x00"),
		"invalid UTF-8":       []byte("{\"\xff\xfe\":\"\xc3\x28\"}"),
		"deep array nesting":  bytes.Repeat([]byte("["), 100_000),
		"deep object nesting": bytes.Repeat([]byte(`{"a":`), 50_000),
		"duplicate keys":      []byte(`{"a":1,"a":2}`),
	}
	for name, b := range bodies {
		add(name, path, rt.contentType, b, header())
	}
	// The route's own fields with bad values: each string field in turn with NUL,
	// invalid UTF-8, only invisible characters, 100 KB; every field with each wrong
	// type.
	valid := func() map[string]json.RawMessage {
		m := map[string]json.RawMessage{}
		for name, typ := range rt.props {
			switch typ {
			case "string":
				m[name] = json.RawMessage(`"x"`)
			case "integer", "number":
				m[name] = json.RawMessage(`1`)
			case "array":
				m[name] = json.RawMessage(`["x"]`)
			case "boolean":
				m[name] = json.RawMessage(`true`)
			default:
				m[name] = json.RawMessage(`{}`)
			}
		}
		return m
	}
	encode := func(m map[string]json.RawMessage) []byte {
		// Built by hand: json.Marshal would make invalid UTF-8 valid.
		var b bytes.Buffer
		b.WriteByte('{')
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for i, k := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%s", k, m[k])
		}
		b.WriteByte('}')
		return b.Bytes()
	}
	for name, typ := range rt.props {
		values := map[string]string{"wrong type number": `1`, "wrong type bool": `true`, "wrong type object": `{}`, "wrong type null": `null`,
			"wrong type array of objects": `[{}]`}
		if typ == "string" {
			delete(values, "wrong type null")
			values["NUL"] = `"a\u0000b"`
			values["invalid UTF-8"] = "\"a\xff\xfeb\xc3\""
			values["only invisible characters"] = `"\u200b\u202e\u2066"`
			values["100 KB"] = `"` + strings.Repeat("x", 100_000) + `"`
			values["number beyond float64"] = `1e400`
		} else {
			values["string"] = `"x"`
		}
		for what, v := range values {
			m := valid()
			m[name] = json.RawMessage(v)
			add(name+": "+what, path, rt.contentType, encode(m), header())
		}
	}
	// Over the 1 MiB limit, without a length, and with a wrong media type.
	over := append(append([]byte(`{"a":"`), bytes.Repeat([]byte("a"), 2<<20)...), '"', '}')
	out = append(out, badRequest{name: "chunked body over 1 MiB " + tag, method: rt.method, url: base + path, contentType: rt.contentType,
		body: over, chunked: true, header: header()})
	add("text/plain body", path, "text/plain", encode(valid()), header())
	add("no Content-Type", path, "", encode(valid()), header())
	return out
}
