package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"folio/internal/devtools/localbuild"
	"folio/internal/platform/polltest"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestKubePlay runs Folio from its Kubernetes manifests: the ci overlay
// (deploy/k8s/overlays/ci: prod, on the host network, with the images
// .ci/containers built) rendered by kubectl kustomize, its Secrets made by
// deploy/k8s/secrets.sh on databases of its own, played by podman. It times the
// start to ready, walks the contract through the gateway (write, read, the genre
// call, the event-fed book_count, a webhook delivery, an order placed by a user
// who registered, confirmed by the order saga over NATS), then replaces the two
// book pods one at a time under a steady load of reads and creates through the
// gateway, and wants no request to fail.
//
// .ci/kube runs it (FOLIO_TEST_KUBE_PLAY=1, as root, with podman configured, the
// images built and FOLIO_TEST_POSTGRES_URL set); it takes the host's ports 8080-8087,
// 8091, 9080-9087, 9091 and 14222.
func TestKubePlay(tt *testing.T) {
	// The pods' logs, dumped when the test fails, run to thousands of lines; a
	// reader of CI's output sees its end. The failures are said again there.
	t := &failureEcho{T: tt}
	tt.Cleanup(t.echo)
	if os.Getenv("FOLIO_TEST_KUBE_PLAY") != "1" {
		t.Skip("plays the Kubernetes manifests with podman: .ci/kube runs it (FOLIO_TEST_KUBE_PLAY=1)")
	}
	if os.Getenv("FOLIO_TEST_POSTGRES_URL") == "" {
		t.Fatal("FOLIO_TEST_POSTGRES_URL is required: the prod overlay runs on PostgreSQL")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bins, err := localbuild.Programs(context.Background(), t.TempDir(), "folio", "payment")
	if err != nil {
		t.Fatal(err)
	}

	// The Secrets, as a user makes them: secrets.sh, with a database per service.
	const adminEmail, adminPassword = "admin@folio.test", "kube-play-admin-password"
	secretsEnv := []string{
		"FOLIO=" + bins["folio"], "FOLIO_PAYMENT_COMMAND=" + bins["payment"], "FOLIO_SECRETS_DIR=" + t.TempDir(),
		"FOLIO_ADMIN_EMAIL=" + adminEmail, "FOLIO_ADMIN_PASSWORD=" + adminPassword,
	}
	for _, s := range []string{"book", "author", "auth", "notify", "inventory", "payment", "order"} {
		secretsEnv = append(secretsEnv, "FOLIO_"+strings.ToUpper(s)+"_DATABASE_URL="+sqldbtest.PostgresDatabase(t))
	}
	secrets := runOut(t, repo, secretsEnv, filepath.Join(repo, "deploy/k8s/secrets.sh"))
	rendered := runOut(t, repo, nil, "kubectl", "kustomize", filepath.Join(repo, "deploy/k8s/overlays/ci"))

	play := adaptForPodman(t, rendered, secrets, t.TempDir())
	t.Cleanup(func() {
		for _, w := range play.workloads {
			if t.Failed() && w.pod != "" {
				out, _ := exec.Command("podman", "pod", "logs", "--tail", "40", w.pod).CombinedOutput()
				t.Logf("the last of %s's log:\n%s", w.pod, out)
			}
			podman(t, "kube", "down", w.file)
		}
		for _, v := range play.volumes {
			podman(t, "volume", "rm", "-f", v)
		}
	})

	// NATS first, as a StatefulSet's pod would be there before the Deployments'
	// in a cluster; the programs would wait for it anyway.
	began := time.Now()
	for _, w := range play.workloads {
		play.start(t, w)
	}
	g := "http://127.0.0.1:8080"
	bookInstances := map[string]string{"book": "127.0.0.1:9081", "book-2": "127.0.0.1:9091"}
	polltest.Until(t, "every program answers /readyz 200", func() error {
		for _, port := range []int{8080, 8081, 8082, 8083, 8084, 8085, 8086, 8087, 8091} {
			if err := ready("http://127.0.0.1:" + strconv.Itoa(port)); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("kube play to every program ready: %v", time.Since(began).Round(100*time.Millisecond))

	// The contract walk, through the gateway only, with the admin's own token.
	r := call(t, "POST", g+"/auth/token", map[string]any{"email": adminEmail, "password": adminPassword})
	expect(t, r, http.StatusOK)
	auth := "Bearer " + r.json(t)["access_token"].(string)
	recv := newReceiver(t, webhookSecret)
	r = call(t, "POST", g+"/subscriptions", map[string]any{"url": recv.srv.URL + "/hook", "events": []string{"book.created"}, "secret": webhookSecret},
		"Authorization", auth)
	expect(t, r, http.StatusCreated)

	r = call(t, "POST", g+"/authors", map[string]any{"name": "Ursula K. Le Guin"}, "Authorization", auth)
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)
	genres := []string{"kube-sf", "kube-fantasy"}
	var bookIDs []string
	for i := range 8 {
		r = call(t, "POST", g+"/books", map[string]any{"title": "Kube " + strconv.Itoa(i), "author_id": authorID, "genre": genres[i%2]},
			"Authorization", auth)
		expect(t, r, http.StatusCreated)
		bookIDs = append(bookIDs, r.json(t)["id"].(string))
	}
	r = call(t, "GET", g+"/books/"+bookIDs[0], nil)
	expect(t, r, http.StatusOK)
	if title := r.json(t)["title"]; title != "Kube 0" {
		t.Errorf("GET /books/%s: title %v, want Kube 0", bookIDs[0], title)
	}
	r = call(t, "GET", g+"/authors/books?genre="+genres[0], nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), bookIDs[0]) || strings.Contains(string(r.body), bookIDs[1]) {
		t.Errorf("GET /authors/books?genre=%s through the author service: %s", genres[0], r.body)
	}
	polltest.Until(t, "the author's book_count, fed by the book service's events", func() error {
		r := call(t, "GET", g+"/authors/"+authorID, nil)
		if n := r.json(t)["book_count"]; n != float64(len(bookIDs)) {
			return fmt.Errorf("book_count %v, want %d", n, len(bookIDs))
		}
		return nil
	})
	polltest.Until(t, "a signed webhook for each book created", func() error {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		if len(recv.bad) > 0 {
			return fmt.Errorf("bad deliveries: %v", recv.bad)
		}
		if len(recv.got) < len(bookIDs) {
			return fmt.Errorf("%d of %d delivered", len(recv.got), len(bookIDs))
		}
		return nil
	})
	recv.mu.Lock()
	if len(recv.bad) > 0 {
		t.Errorf("bad webhook deliveries: %v", recv.bad)
	}
	recv.mu.Unlock()
	kubePlayOrder(t, g, auth, bookIDs[0])

	// The rolling update: each book pod stopped as Kubernetes stops one (SIGTERM,
	// the grace period of its spec) and played again, the other serving meanwhile.
	const postGenre = "kube-rolling"
	load := startRollingLoad(g, bookIDs, genres, postGenre, authorID, auth)
	defer load.stop()
	polltest.Until(t, "both book pods take reads", func() error {
		for name, metrics := range bookInstances {
			if n, err := readRouteCount("http://"+metrics, "GET /books/{id}", "200"); err != nil || n == 0 {
				return fmt.Errorf("%s: %v reads (%v)", name, n, err)
			}
		}
		return nil
	})
	if before := load.snapshot(); before.total().failures > 0 {
		t.Errorf("requests failed before the rolling update: %s", before.failuresText())
	}
	load.reset()
	rollBegan := time.Now()
	for _, name := range []string{"book", "book-2"} {
		w := play.workload(t, name)
		load.setPhase(name + " replaced")
		stopped := time.Now()
		podman(t, "pod", "stop", "-t", strconv.Itoa(w.grace), w.pod)
		t.Logf("%s: stopped %v after SIGTERM", name, time.Since(stopped).Round(time.Millisecond))
		podman(t, "kube", "down", w.file)
		play.start(t, w)
		polltest.Until(t, name+" takes reads again", func() error {
			if n, err := readRouteCount("http://"+bookInstances[name], "GET /books/{id}", "200"); err != nil || n == 0 {
				return fmt.Errorf("%v reads (%v)", n, err)
			}
			return nil
		})
		t.Logf("%s: replaced, taking reads %v after its stop began", name, time.Since(stopped).Round(time.Millisecond))
	}
	load.stop()
	during := load.snapshot()
	t.Logf("rolling update of the book pods (%v): %s", time.Since(rollBegan).Round(time.Millisecond), during)
	if during.total().requests == 0 || during.kinds[kindPost].requests == 0 {
		t.Fatalf("the load did not run during the rolling update: %s", during)
	}
	if f := during.total().failures; f > 0 {
		t.Errorf("%d requests failed during the rolling update: %s", f, during.failuresText())
	}
	if got, want := count(t, g+"/books?genre="+postGenre), load.succeededSinceStart(kindPost); got != want {
		t.Errorf("%d books in genre %s, want %d (one per 201)", got, postGenre, want)
	}
}

// kubePlayOrder walks the order saga through the gateway: the admin gives book
// stock and a price, a user who registers orders one copy with an approved test
// card (202), and the order, which the order, inventory and payment services
// pass between them over NATS, reaches confirmed, its copy out of stock; the
// payment service stays out of the gateway's reach.
func kubePlayOrder(t testing.TB, g, admin, book string) {
	t.Helper()
	const stock = 5
	r := call(t, "PUT", g+"/inventory/"+book, map[string]any{"quantity": stock, "price": map[string]any{"amount": 1299, "currency": "EUR"}},
		"Authorization", admin)
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		t.Fatalf("PUT /inventory/%s: %d %s", book, r.status, r.body)
	}
	const buyerEmail, buyerPassword = "buyer@folio.test", "kube-play-buyer-password"
	r = call(t, "POST", g+"/auth/register", map[string]any{"email": buyerEmail, "password": buyerPassword})
	expect(t, r, http.StatusCreated)
	r = call(t, "POST", g+"/auth/token", map[string]any{"email": buyerEmail, "password": buyerPassword})
	expect(t, r, http.StatusOK)
	buyer := "Bearer " + r.json(t)["access_token"].(string)

	placed := time.Now()
	r = call(t, "POST", g+"/orders", map[string]any{
		"items":   []map[string]any{{"book_id": book, "quantity": 1}},
		"payment": map[string]any{"card": map[string]any{"number": "4242424242424242", "expiry": "12/39", "cvc": "123"}},
	}, "Authorization", buyer)
	expect(t, r, http.StatusAccepted)
	order := r.json(t)
	id, _ := order["id"].(string)
	if id == "" || order["state"] != "pending" {
		t.Fatalf("POST /orders: %s; want an id and state pending", r.body)
	}
	polltest.Until(t, "the order confirmed by the saga", func() error {
		r := call(t, "GET", g+"/orders/"+id, nil, "Authorization", buyer)
		if r.status != http.StatusOK {
			return fmt.Errorf("GET /orders/%s: %d %s", id, r.status, r.body)
		}
		switch state := r.json(t)["state"]; state {
		case "confirmed":
			return nil
		case "rejected", "payment_failed", "cancelled":
			t.Fatalf("the order ended %v, want confirmed: %s", state, r.body)
		default:
			return fmt.Errorf("state %v", state)
		}
		return nil
	})
	t.Logf("order placed through the gateway, confirmed %v later", time.Since(placed).Round(time.Millisecond))
	// The payment service is internal: the gateway has no route to it, not even
	// for an admin.
	r = call(t, "GET", g+"/payments/"+id, nil, "Authorization", admin)
	if r.status != http.StatusNotFound {
		t.Errorf("GET /payments/%s through the gateway: %d, want 404 (the payment service has no route): %s", id, r.status, r.body)
	}
	r = call(t, "GET", g+"/inventory/"+book, nil)
	expect(t, r, http.StatusOK)
	if got := r.json(t)["quantity"]; got != float64(stock-1) {
		t.Errorf("GET /inventory/%s after the order: quantity %v, want %d: %s", book, got, stock-1, r.body)
	}
}

// podPlay is the ci overlay as podman plays it: one file per workload, with the
// ConfigMaps, so that a workload can be replaced alone.
type podPlay struct {
	workloads []*podWorkload
	volumes   []string // named volumes (the PersistentVolumeClaims, the ConfigMaps) to remove
}

type podWorkload struct {
	name  string
	file  string
	pod   string // the pod podman made of it, once started
	grace int    // terminationGracePeriodSeconds
}

func (p *podPlay) start(t testing.TB, w *podWorkload) {
	t.Helper()
	podman(t, "kube", "play", w.file)
	// A Deployment's single pod is <name>-pod-0 (podman runs one replica).
	w.pod = w.name + "-pod-0"
}

func (p *podPlay) workload(t testing.TB, name string) *podWorkload {
	for _, w := range p.workloads {
		if w.name == name {
			return w
		}
	}
	t.Fatalf("no workload %s in the rendered overlay", name)
	return nil
}

// adaptForPodman turns the rendered overlay into what podman kube play runs,
// writing the files under dir. What podman does not run is left out and said:
// Services, disruption budgets, autoscalers and network policies have no meaning
// on one machine with host networking; the Namespace neither. A StatefulSet
// becomes a Deployment with its volume claim as a named volume. Secrets, which
// podman kube play cannot read from Kubernetes YAML, become files of dir mounted
// where the Secret volume was, and literal values where env referred to one.
func adaptForPodman(t testing.TB, rendered, secretsYAML []byte, dir string) *podPlay {
	t.Helper()
	secrets := map[string]map[string][]byte{}
	for _, doc := range yamlDocs(secretsYAML) {
		var s corev1.Secret
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			t.Fatalf("secrets.sh: %v", err)
		}
		secrets[s.Name] = s.Data
	}
	p := &podPlay{}
	var configMaps [][]byte
	var skipped []string
	type adapted struct {
		w    *podWorkload
		yaml []byte
	}
	var workloads []adapted
	for _, doc := range yamlDocs(rendered) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		switch meta.Kind {
		case "ConfigMap":
			configMaps = append(configMaps, doc)
			// podman keeps a ConfigMap mounted as a volume (nats-config) in a
			// named volume of its name, which kube down leaves behind.
			var cm struct{ Metadata struct{ Name string } }
			if err := yaml.Unmarshal(doc, &cm); err != nil {
				t.Fatal(err)
			}
			p.volumes = append(p.volumes, cm.Metadata.Name)
			continue
		case "Deployment":
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				t.Fatal(err)
			}
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				t.Fatal(err)
			}
			d = appsv1.Deployment{TypeMeta: s.TypeMeta, ObjectMeta: s.ObjectMeta, Spec: appsv1.DeploymentSpec{
				Replicas: s.Spec.Replicas, Selector: s.Spec.Selector, Template: s.Spec.Template}}
			d.Kind = "Deployment"
			for _, claim := range s.Spec.VolumeClaimTemplates {
				volume := "folio-kube-play-" + s.Name + "-" + claim.Name
				p.volumes = append(p.volumes, volume)
				d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: claim.Name,
					VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: volume}}})
			}
		default:
			skipped = append(skipped, meta.Kind)
			continue
		}
		pod := &d.Spec.Template.Spec
		for i, v := range pod.Volumes {
			if v.Secret == nil {
				continue
			}
			files := filepath.Join(dir, "secrets", d.Name, v.Name)
			writeSecretFiles(t, files, secrets, v.Secret.SecretName)
			pod.Volumes[i].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: files}}
		}
		for ci := range pod.Containers {
			c := &pod.Containers[ci]
			// On the host network a container port is only a name; podman 4.3
			// refuses it as a port mapping. It runs a probe as a command inside the
			// container (curl, nc), which an image from scratch does not have:
			// the test probes /readyz from outside instead.
			c.Ports = nil
			c.StartupProbe, c.LivenessProbe, c.ReadinessProbe = nil, nil, nil
			env := c.Env[:0]
			// podman 4.3 knows no status.podIP (on the host network, the host's
			// address) and expands no $(VAR) in a value: both done here, as the
			// kubelet does them.
			fields := map[string]string{"status.podIP": "127.0.0.1", "metadata.name": d.Name + "-pod-0"}
			expanded := map[string]string{}
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.FieldRef != nil && fields[ref.FieldRef.FieldPath] != "" {
					e = corev1.EnvVar{Name: e.Name, Value: fields[ref.FieldRef.FieldPath]}
				}
				for name, value := range expanded {
					e.Value = strings.ReplaceAll(e.Value, "$("+name+")", value)
				}
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
					value, ok := secrets[ref.SecretKeyRef.Name][ref.SecretKeyRef.Key]
					if !ok {
						if ref.SecretKeyRef.Optional != nil && *ref.SecretKeyRef.Optional {
							continue
						}
						t.Fatalf("%s: env %s needs key %s of Secret %s, which secrets.sh did not make", d.Name, e.Name, ref.SecretKeyRef.Key, ref.SecretKeyRef.Name)
					}
					e = corev1.EnvVar{Name: e.Name, Value: string(value)}
				}
				expanded[e.Name] = e.Value
				env = append(env, e)
			}
			c.Env = env
		}
		out, err := yaml.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		w := &podWorkload{name: d.Name, file: filepath.Join(dir, d.Name+".yaml"), grace: 30}
		if g := pod.TerminationGracePeriodSeconds; g != nil {
			w.grace = int(*g)
		}
		// NATS first: the StatefulSet sorts before the Deployments it serves.
		if meta.Kind == "StatefulSet" {
			workloads = slices.Insert(workloads, 0, adapted{w, out})
		} else {
			workloads = append(workloads, adapted{w, out})
		}
	}
	for _, a := range workloads {
		if err := os.WriteFile(a.w.file, bytes.Join(append(slices.Clone(configMaps), a.yaml), []byte("\n---\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		p.workloads = append(p.workloads, a.w)
	}
	slices.Sort(skipped)
	t.Logf("podman plays %d workloads; not played here (no meaning on one host): %s", len(p.workloads), strings.Join(slices.Compact(skipped), ", "))
	return p
}

// writeSecretFiles writes each key of Secret name as a file of dir, as a Secret
// volume with defaultMode 0440 and fsGroup 65532 shows it (owner root, group the
// programs' own); on a CI machine's disk, not a cluster's tmpfs.
func writeSecretFiles(t testing.TB, dir string, secrets map[string]map[string][]byte, name string) {
	t.Helper()
	data, ok := secrets[name]
	if !ok {
		t.Fatalf("Secret %s is mounted but secrets.sh did not make it", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for key, value := range data {
		file := filepath.Join(dir, key)
		if err := os.WriteFile(file, value, 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, 0, 65532); err != nil {
			t.Fatal(err)
		}
	}
	// t.TempDir is 0700: let the programs' user through to the files.
	for d := dir; d != "/" && d != filepath.Dir(d); d = filepath.Dir(d) {
		if info, err := os.Stat(d); err == nil && info.Mode().Perm()&0o001 == 0 && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir() {
			if err := os.Chmod(d, info.Mode().Perm()|0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// yamlDocs splits a multi-document YAML stream.
func yamlDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		doc = bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---"))
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

// runOut runs a command in dir with env added and returns its standard output.
func runOut(t testing.TB, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// podman runs podman with args, failing t with its output if it fails.
func podman(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) || len(out) > 0 {
			t.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
			return ""
		}
		t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// failureEcho is a test that keeps what it failed with, to say it again as the
// last thing it logs.
type failureEcho struct {
	*testing.T
	mu       sync.Mutex
	failures []string
}

// Error and Fatal go through Errorf and Fatalf, which keep the message: a
// helper's failure (expect's, polltest's) lands there too, since the helpers take
// a testing.TB.
func (f *failureEcho) Error(args ...any) { f.T.Helper(); f.Errorf("%s", fmt.Sprint(args...)) }
func (f *failureEcho) Fatal(args ...any) { f.T.Helper(); f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *failureEcho) Errorf(format string, args ...any) {
	f.T.Helper()
	f.keep(fmt.Sprintf(format, args...))
	f.T.Errorf(format, args...)
}

func (f *failureEcho) Fatalf(format string, args ...any) {
	f.T.Helper()
	f.keep(fmt.Sprintf(format, args...))
	f.T.Fatalf(format, args...)
}

func (f *failureEcho) keep(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, msg)
}

func (f *failureEcho) echo() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, msg := range f.failures {
		if len(msg) > 600 {
			msg = msg[:600] + "…"
		}
		f.T.Logf("failure %d of %d, said again: %s", i+1, len(f.failures), msg)
	}
}
