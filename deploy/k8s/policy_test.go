// Package k8s holds Folio's Kubernetes manifests (a kustomize base and its
// overlays) and the test that renders every overlay, decodes each object
// strictly into the k8s.io/api types and holds it to Folio's deployment policy.
package k8s

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"folio/internal/platform/broker/natsconn"
)

// TestManifests renders the base and every overlay and checks each against the
// policy. The overlays named prod and dev get their own rules on top.
func TestManifests(t *testing.T) {
	dirs := []string{"base"}
	for _, o := range overlays(t) {
		dirs = append(dirs, filepath.Join("overlays", o))
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			objs, err := render(dir)
			if err != nil {
				t.Fatalf("%s: rendering %s: %v", name, dir, err)
			}
			for _, v := range checkPolicy(name, objs) {
				t.Error(v)
			}
		})
	}
}

// TestEveryProgramIsChecked: every program the broker has a credential for
// (natsconn's permission table, which `folio nats` makes the nkeys from) is one
// the policy knows, so a new service cannot be left out of the manifests.
func TestEveryProgramIsChecked(t *testing.T) {
	if got, want := sortedPrograms(), natsconn.Programs(); !slices.Equal(got, want) {
		t.Errorf("programs checked %v, want natsconn's %v", got, want)
	}
}

const (
	nameLabel   = "app.kubernetes.io/name"
	partOfLabel = "app.kubernetes.io/part-of"
	// nsNameLabel is the label Kubernetes puts on every namespace, which a
	// namespaceSelector sees.
	nsNameLabel = "kubernetes.io/metadata.name"
)

// programs are Folio's own programs and their http ports; each serves metrics
// on its http port + 1000.
var programs = map[string]int32{"gateway": 8080, "book": 8081, "author": 8082, "auth": 8083, "notify": 8084,
	"inventory": 8085, "payment": 8086, "order": 8087}

// stateful are the programs that keep data of their own in a database.
var stateful = []string{"book", "author", "auth", "notify", "inventory", "payment", "order"}

// autoscaled are the programs prod scales on CPU: those that take the request
// load.
var autoscaled = []string{"gateway", "book", "author", "inventory", "order"}

// httpPeers are the programs allowed into each program's http port: who calls
// whom (the gateway everyone it routes to; book checks authors and author
// books; everyone fetches auth's JWKS). The gateway's http port is open to all;
// payment's to no one, as the order saga reaches it through the broker only.
var httpPeers = map[string][]string{
	"book":      {"gateway", "author"},
	"author":    {"gateway", "book"},
	"auth":      {"gateway", "book", "author", "notify", "inventory", "payment", "order"},
	"notify":    {"gateway"},
	"inventory": {"gateway"},
	"order":     {"gateway"},
	"payment":   {},
}

// Peers that are no Folio workload, for reading NetworkPolicies: Prometheus in
// Folio's namespace and in another, any other pod of either, and a client
// outside the cluster.
const (
	promHere   = "prometheus in the namespace"
	promAway   = "prometheus in another namespace"
	otherHere  = "another pod of the namespace"
	otherAway  = "a pod of another namespace"
	outsideNet = "outside the cluster"
)

var prometheusPeers = []string{promAway, promHere}

// workload is a Deployment or StatefulSet seen through its pod template.
type workload struct {
	kind, name, namespace string
	program               string // the pod template's app.kubernetes.io/name
	pod                   *corev1.PodSpec
	podLabels             map[string]string
	replicas              int32
	deployment            *appsv1.Deployment
	statefulSet           *appsv1.StatefulSet
}

// manifests is one render, indexed for the checks.
type manifests struct {
	overlay    string
	workloads  []*workload
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap // by namespace/name
	pvcs       map[string]*corev1.PersistentVolumeClaim
	pdbs       []*policyv1.PodDisruptionBudget
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
	netpols    []*networkingv1.NetworkPolicy
	violations []string
}

func (m *manifests) fail(kind, name, rule, format string, args ...any) {
	m.violations = append(m.violations, fmt.Sprintf("%s: %s/%s: %s: %s", m.overlay, kind, name, rule, fmt.Sprintf(format, args...)))
}

func (m *manifests) failW(w *workload, rule, format string, args ...any) {
	m.fail(w.kind, w.name, rule, format, args...)
}

// checkPolicy returns every way objs, the render of the named overlay, breaks
// Folio's deployment policy; nil means none.
func checkPolicy(overlay string, objs []runtime.Object) []string {
	m := &manifests{overlay: overlay, configMaps: map[string]*corev1.ConfigMap{}, pvcs: map[string]*corev1.PersistentVolumeClaim{}}
	for _, obj := range objs {
		meta, ok := obj.(metav1.Object)
		if !ok {
			m.fail(fmt.Sprintf("%T", obj), "?", "kind", "not an API object")
			continue
		}
		kind := kindOf(obj)
		if meta.GetLabels()[partOfLabel] != "folio" {
			m.fail(kind, meta.GetName(), "labels", "no label %s: folio", partOfLabel)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			replicas := int32(1)
			if o.Spec.Replicas != nil {
				replicas = *o.Spec.Replicas
			}
			m.workloads = append(m.workloads, &workload{kind: "Deployment", name: o.Name, namespace: o.Namespace,
				program: o.Spec.Template.Labels[nameLabel], pod: &o.Spec.Template.Spec, podLabels: o.Spec.Template.Labels,
				replicas: replicas, deployment: o})
		case *appsv1.StatefulSet:
			replicas := int32(1)
			if o.Spec.Replicas != nil {
				replicas = *o.Spec.Replicas
			}
			m.workloads = append(m.workloads, &workload{kind: "StatefulSet", name: o.Name, namespace: o.Namespace,
				program: o.Spec.Template.Labels[nameLabel], pod: &o.Spec.Template.Spec, podLabels: o.Spec.Template.Labels,
				replicas: replicas, statefulSet: o})
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps[o.Namespace+"/"+o.Name] = o
		case *corev1.PersistentVolumeClaim:
			m.pvcs[o.Namespace+"/"+o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		case *networkingv1.NetworkPolicy:
			m.netpols = append(m.netpols, o)
		case *corev1.Secret, *corev1.Namespace, *corev1.ServiceAccount:
		default:
			m.fail(kind, meta.GetName(), "kind", "a kind the policy does not check")
		}
	}

	m.checkPrograms()
	for _, w := range m.workloads {
		m.checkWorkload(w)
	}
	m.checkNetworkPolicies()
	m.checkServices()
	m.checkHPAs()
	switch overlay {
	case "prod":
		m.checkProd()
	case "dev":
		m.checkDev()
	}
	return m.violations
}

func kindOf(obj runtime.Object) string {
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	t := fmt.Sprintf("%T", obj)
	return t[strings.LastIndex(t, ".")+1:]
}

// checkPrograms checks that every program is there, as the kind it must be.
func (m *manifests) checkPrograms() {
	found := map[string]bool{}
	for _, w := range m.workloads {
		found[w.program] = true
		switch {
		case w.program == "nats":
			if w.kind != "StatefulSet" {
				m.failW(w, "nats", "nats must run as a StatefulSet (its stream lives on a volume of its own)")
			}
		case programs[w.program] != 0:
			if w.kind != "Deployment" {
				m.failW(w, "program", "%s must run as a Deployment", w.program)
			}
		default:
			m.failW(w, "labels", "pod label %s is %q, not a Folio program or nats", nameLabel, w.program)
		}
		if w.podLabels[partOfLabel] != "folio" {
			m.failW(w, "labels", "pod template has no label %s: folio", partOfLabel)
		}
	}
	for _, p := range append(sortedPrograms(), "nats") {
		if !found[p] {
			m.fail("Deployment", p, "program", "no workload of %s in the render", p)
		}
	}
}

func sortedPrograms() []string {
	var ps []string
	for p := range programs {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

func (m *manifests) checkWorkload(w *workload) {
	for _, c := range w.pod.InitContainers {
		m.checkContainer(w, &c, true)
	}
	for _, c := range w.pod.Containers {
		m.checkContainer(w, &c, false)
	}
	if programs[w.program] != 0 {
		m.checkPorts(w)
		m.checkShutdown(w)
		m.checkSecretFiles(w)
		m.checkCardKey(w)
	}
	m.checkPDB(w)
	m.checkVolumes(w)
	if w.deployment != nil {
		m.checkSpread(w)
	}
	if w.program == "nats" && w.statefulSet != nil {
		m.checkNATS(w)
	}
}

// checkContainer: probes, resources, security context and image.
func (m *manifests) checkContainer(w *workload, c *corev1.Container, init bool) {
	where := "container " + c.Name
	if !init || isSidecar(c) {
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
		}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}, {"startup", c.StartupProbe}} {
			if p.probe == nil {
				m.failW(w, "probes", "%s has no %s probe", where, p.name)
			}
		}
		if programs[w.program] != 0 {
			m.checkHTTPProbe(w, c, "liveness", c.LivenessProbe, "/healthz")
			m.checkHTTPProbe(w, c, "readiness", c.ReadinessProbe, "/readyz")
		}
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			m.failW(w, "resources", "%s has no %s request", where, r)
		}
		if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
			m.failW(w, "resources", "%s has no %s limit", where, r)
		}
	}

	m.checkSecurity(w, c)

	if tag, ok := imageTag(c.Image); !ok {
		m.failW(w, "image", "%s image %q has no tag", where, c.Image)
	} else if tag == "latest" {
		m.failW(w, "image", "%s image %q is :latest", where, c.Image)
	}
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// imageTag returns the tag of an image reference: after the last colon that
// follows the last slash (a colon before it belongs to a registry's port).
func imageTag(image string) (string, bool) {
	ref, _, _ := strings.Cut(image, "@")
	name := ref[strings.LastIndex(ref, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 || i == len(name)-1 {
		return "", false
	}
	return name[i+1:], true
}

func (m *manifests) checkHTTPProbe(w *workload, c *corev1.Container, kind string, p *corev1.Probe, wantPath string) {
	if p == nil {
		return
	}
	if p.HTTPGet == nil {
		m.failW(w, "probes", "container %s %s probe is not an httpGet of %s", c.Name, kind, wantPath)
		return
	}
	if p.HTTPGet.Path != wantPath {
		m.failW(w, "probes", "container %s %s probe asks for %q, want %s", c.Name, kind, p.HTTPGet.Path, wantPath)
	}
	port, ok := containerPort(c, p.HTTPGet.Port.String())
	if !ok || port.Name != "http" {
		m.failW(w, "probes", "container %s %s probe asks port %s, want the http port", c.Name, kind, p.HTTPGet.Port.String())
	}
}

// containerPort finds a port of c by name or by number.
func containerPort(c *corev1.Container, nameOrNumber string) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if p.Name == nameOrNumber || strconv.Itoa(int(p.ContainerPort)) == nameOrNumber {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// checkSecurity resolves the container's security context as the kubelet does
// (the container's own setting first, else the pod's) and holds it to the
// restricted Pod Security Standard.
func (m *manifests) checkSecurity(w *workload, c *corev1.Container) {
	psc := w.pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	where := "container " + c.Name

	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		m.failW(w, "security", "%s does not set runAsNonRoot: true", where)
	}
	user := sc.RunAsUser
	if user == nil {
		user = psc.RunAsUser
	}
	if user != nil && *user == 0 {
		m.failW(w, "security", "%s runs as user 0", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		m.failW(w, "security", "%s does not set readOnlyRootFilesystem: true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		m.failW(w, "security", "%s does not set allowPrivilegeEscalation: false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		m.failW(w, "security", "%s is privileged", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		m.failW(w, "security", "%s does not drop ALL capabilities", where)
	} else if len(sc.Capabilities.Add) > 0 {
		m.failW(w, "security", "%s adds capabilities %v", where, sc.Capabilities.Add)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		m.failW(w, "security", "%s does not run under the RuntimeDefault seccomp profile", where)
	}
}

// envValue is what a container's variable resolves to within the render.
type envValue struct {
	value     string
	literal   bool                      // value is known
	secretKey *corev1.SecretKeySelector // or it comes from this Secret key
	source    string                    // where it came from, for messages
}

// containerEnv resolves c's environment as the kubelet does: envFrom sources in
// order, then env, a later definition overriding an earlier one. Values from a
// ConfigMap of the render are known; a ConfigMap missing from it is reported.
func (m *manifests) containerEnv(w *workload, c *corev1.Container) map[string]envValue {
	env := map[string]envValue{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := m.configMaps[w.namespace+"/"+from.ConfigMapRef.Name]
			if !ok {
				if from.ConfigMapRef.Optional == nil || !*from.ConfigMapRef.Optional {
					m.failW(w, "env", "container %s takes its env from ConfigMap %s, which is not in the render", c.Name, from.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = envValue{value: v, literal: true, source: "ConfigMap " + cm.Name}
			}
		case from.SecretRef != nil:
			// Its keys are not known here; a variable it may set stays as it was.
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envValue{value: e.Value, literal: true, source: "env"}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = envValue{secretKey: e.ValueFrom.SecretKeyRef, source: "Secret " + e.ValueFrom.SecretKeyRef.Name}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := m.configMaps[w.namespace+"/"+ref.Name]
			if !ok {
				env[e.Name] = envValue{source: "ConfigMap " + ref.Name + " (not in the render)"}
				continue
			}
			v, ok := cm.Data[ref.Key]
			env[e.Name] = envValue{value: v, literal: ok, source: "ConfigMap " + ref.Name}
		default:
			env[e.Name] = envValue{source: "the pod's fields"}
		}
	}
	return env
}

// checkShutdown: a pod must be given time to drain (FOLIO_SHUTDOWN_DELAY of
// /readyz failing while still serving, 1 s withdrawn from the registry while
// still answering, FOLIO_SHUTDOWN_TIMEOUT for requests in flight) before the
// kubelet kills it, and must not stop serving before its endpoints are gone.
func (m *manifests) checkShutdown(w *workload) {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if w.pod.TerminationGracePeriodSeconds != nil {
		grace = *w.pod.TerminationGracePeriodSeconds
	}
	for _, c := range w.pod.Containers {
		env := m.containerEnv(w, &c)
		duration := func(name string, def time.Duration) (time.Duration, bool) {
			v, ok := env[name]
			if !ok {
				return def, true
			}
			if !v.literal {
				m.failW(w, "shutdown", "container %s: %s comes from %s, which the render does not show", c.Name, name, v.source)
				return 0, false
			}
			d, err := time.ParseDuration(v.value)
			if err != nil {
				m.failW(w, "shutdown", "container %s: %s %q (from %s) is not a duration", c.Name, name, v.value, v.source)
				return 0, false
			}
			return d, true
		}
		delay, ok1 := duration("FOLIO_SHUTDOWN_DELAY", 0)
		timeout, ok2 := duration("FOLIO_SHUTDOWN_TIMEOUT", 15*time.Second)
		if !ok1 || !ok2 {
			continue
		}
		need := delay + time.Second + timeout
		if time.Duration(grace)*time.Second <= need {
			m.failW(w, "shutdown", "terminationGracePeriodSeconds %d is not longer than container %s's FOLIO_SHUTDOWN_DELAY %s + 1s + FOLIO_SHUTDOWN_TIMEOUT %s", grace, c.Name, delay, timeout)
		}
		if delay <= 0 && (c.Lifecycle == nil || c.Lifecycle.PreStop == nil) {
			m.failW(w, "shutdown", "container %s has neither a FOLIO_SHUTDOWN_DELAY above 0 nor a preStop hook, so it stops serving before its endpoints are withdrawn", c.Name)
		}
	}
}

// checkSecretFiles: a secret a program reads from a file must be in a volume
// mounted into that container, not on the (read-only, image-owned) root.
func (m *manifests) checkSecretFiles(w *workload) {
	volumes := map[string]bool{}
	for _, v := range w.pod.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range w.pod.Containers {
		env := m.containerEnv(w, &c)
		for _, name := range []string{"FOLIO_NATS_NKEY_FILE", "FOLIO_SECRETS_KEY_FILE", "FOLIO_PAYMENT_CARD_KEY_FILE"} {
			v, ok := env[name]
			if !ok {
				continue
			}
			if !v.literal {
				m.failW(w, "secret-files", "container %s: %s comes from %s, not a path the render shows", c.Name, name, v.source)
				continue
			}
			file := path.Clean(v.value)
			mounted := false
			for _, vm := range c.VolumeMounts {
				dir := path.Clean(vm.MountPath)
				if volumes[vm.Name] && (file == dir || strings.HasPrefix(file, dir+"/")) {
					mounted = true
					break
				}
			}
			if !mounted {
				m.failW(w, "secret-files", "container %s: %s %s is under no volume mounted into the container", c.Name, name, v.value)
			}
		}
	}
}

// checkCardKey: every payment pod opens card data with the one private key of a
// Secret (a pod left without one would make its own in its data directory,
// which the order service's public key would not match, and every payment
// would be declined), and every order pod is given the public key to seal to.
func (m *manifests) checkCardKey(w *workload) {
	if w.program != "payment" && w.program != "order" {
		return
	}
	for _, c := range w.pod.Containers {
		env := m.containerEnv(w, &c)
		if w.program == "order" {
			if _, ok := env["FOLIO_PAYMENT_CARD_PUBLIC_KEY"]; !ok {
				m.failW(w, "card-key", "container %s has no FOLIO_PAYMENT_CARD_PUBLIC_KEY, the payment service's public card key", c.Name)
			}
			continue
		}
		if v, ok := env["FOLIO_PAYMENT_CARD_KEY"]; ok {
			if v.secretKey == nil {
				m.failW(w, "card-key", "container %s's FOLIO_PAYMENT_CARD_KEY comes from %s, not a secretKeyRef", c.Name, v.source)
			}
			continue
		}
		v, ok := env["FOLIO_PAYMENT_CARD_KEY_FILE"]
		if !ok || !v.literal {
			m.failW(w, "card-key", "container %s has no FOLIO_PAYMENT_CARD_KEY_FILE: each pod would make a card key of its own", c.Name)
			continue
		}
		file := path.Clean(v.value)
		onSecret := false
		for _, vm := range c.VolumeMounts {
			dir := path.Clean(vm.MountPath)
			if file != dir && !strings.HasPrefix(file, dir+"/") {
				continue
			}
			for _, vol := range w.pod.Volumes {
				if vol.Name == vm.Name && vol.Secret != nil {
					onSecret = true
				}
			}
		}
		if !onSecret {
			m.failW(w, "card-key", "container %s: FOLIO_PAYMENT_CARD_KEY_FILE %s is on no Secret volume: each pod would make a card key of its own", c.Name, v.value)
		}
	}
}

// checkPDB: exactly one PodDisruptionBudget covers the workload's pods (two
// would make the eviction API refuse every eviction of them).
func (m *manifests) checkPDB(w *workload) {
	var names []string
	for _, pdb := range m.pdbs {
		if pdb.Namespace == w.namespace && selects(pdb.Spec.Selector, w.podLabels) {
			names = append(names, pdb.Name)
		}
	}
	if len(names) != 1 {
		m.failW(w, "pdb", "matched by %d PodDisruptionBudgets %v, want exactly 1", len(names), names)
	}
}

func selects(sel *metav1.LabelSelector, set map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(set))
}

// checkVolumes: a claim a pod names must be in the render, and a Deployment on a
// ReadWriteOnce claim must stop its old pod before starting the new one.
func (m *manifests) checkVolumes(w *workload) {
	for _, v := range w.pod.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, ok := m.pvcs[w.namespace+"/"+v.PersistentVolumeClaim.ClaimName]
		if !ok {
			elsewhere := ""
			for _, other := range m.pvcs {
				if other.Name == v.PersistentVolumeClaim.ClaimName {
					elsewhere = fmt.Sprintf(" (it is, in namespace %q instead of %q)", other.Namespace, w.namespace)
				}
			}
			m.failW(w, "volumes", "volume %s names PersistentVolumeClaim %s, which is not in the render%s", v.Name, v.PersistentVolumeClaim.ClaimName, elsewhere)
			continue
		}
		rwo := slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) || slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOncePod)
		if w.deployment != nil && rwo && w.deployment.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			m.failW(w, "rollout", "mounts ReadWriteOnce claim %s but its strategy is %q, not Recreate", pvc.Name, w.deployment.Spec.Strategy.Type)
		}
	}
}

func (m *manifests) checkSpread(w *workload) {
	tsc := w.pod.TopologySpreadConstraints
	if len(tsc) == 0 {
		m.failW(w, "spread", "no topologySpreadConstraints")
	}
	for _, c := range tsc {
		if !selects(c.LabelSelector, w.podLabels) {
			m.failW(w, "spread", "topology spread over %s does not select the Deployment's own pods", c.TopologyKey)
		}
	}
}

// checkNATS: the stream must outlive the pod, so /data is a claim of the
// StatefulSet's own.
func (m *manifests) checkNATS(w *workload) {
	claims := map[string]bool{}
	for _, t := range w.statefulSet.Spec.VolumeClaimTemplates {
		claims[t.Name] = true
	}
	for _, c := range w.pod.Containers {
		ok := false
		for _, vm := range c.VolumeMounts {
			if path.Clean(vm.MountPath) == "/data" && claims[vm.Name] {
				ok = true
			}
		}
		if !ok {
			m.failW(w, "nats", "container %s mounts no volumeClaimTemplate at /data", c.Name)
		}
		if _, ok := containerPort(&c, "client"); !ok {
			m.failW(w, "nats", "container %s has no port named client", c.Name)
		}
	}
}

// checkServices: a Service must reach pods, on a port they have.
func (m *manifests) checkServices() {
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 {
			m.fail("Service", s.Name, "service", "no selector")
			continue
		}
		var matched []*workload
		for _, w := range m.workloads {
			if w.namespace == s.Namespace && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.podLabels)) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			m.fail("Service", s.Name, "service", "selector %v matches no workload's pods", s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort.String()
			if p.TargetPort.IntValue() == 0 && p.TargetPort.StrVal == "" {
				target = strconv.Itoa(int(p.Port))
			}
			for _, w := range matched {
				found := false
				for _, c := range w.pod.Containers {
					if _, ok := containerPort(&c, target); ok {
						found = true
					}
				}
				if !found {
					m.fail("Service", s.Name, "service", "port %s targets %s, which no container of %s %s has", p.Name, target, w.kind, w.name)
				}
			}
		}
	}
}

// checkHPAs: an autoscaler must scale something that exists.
func (m *manifests) checkHPAs() {
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if w := m.deploymentNamed(h.Namespace, ref.Name); ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || w == nil {
			m.fail("HorizontalPodAutoscaler", h.Name, "hpa", "scales %s %s/%s, which is no Deployment of the render", ref.APIVersion, ref.Kind, ref.Name)
		}
	}
}

func (m *manifests) deploymentNamed(namespace, name string) *workload {
	for _, w := range m.workloads {
		if w.deployment != nil && w.namespace == namespace && w.name == name {
			return w
		}
	}
	return nil
}

// programDeployments are the Deployments that run p (more than one where an
// overlay adds a second, like ci's book-2).
func (m *manifests) programDeployments(p string) []*workload {
	var ws []*workload
	for _, w := range m.workloads {
		if w.deployment != nil && w.program == p {
			ws = append(ws, w)
		}
	}
	return ws
}

func (m *manifests) checkProd() {
	for _, p := range autoscaled {
		found := false
		for _, h := range m.hpas {
			w := m.deploymentNamed(h.Namespace, h.Spec.ScaleTargetRef.Name)
			if w == nil || w.program != p || h.Spec.ScaleTargetRef.Kind != "Deployment" {
				continue
			}
			found = true
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
				m.fail("HorizontalPodAutoscaler", h.Name, "hpa", "minReplicas below 2 leaves %s one pod to lose", p)
			}
		}
		if !found {
			m.fail("Deployment", p, "hpa", "no HorizontalPodAutoscaler scales %s", p)
		}
	}
	for _, p := range sortedPrograms() {
		for _, w := range m.programDeployments(p) {
			if w.replicas != 3 {
				m.failW(w, "replicas", "%d replicas, want 3 in prod", w.replicas)
			}
			if !slices.Contains(stateful, p) {
				continue
			}
			for _, c := range w.pod.Containers {
				v, ok := m.containerEnv(w, &c)["FOLIO_DATABASE_URL"]
				switch {
				case !ok:
					m.failW(w, "database", "container %s has no FOLIO_DATABASE_URL", c.Name)
				case v.secretKey == nil:
					m.failW(w, "database", "container %s's FOLIO_DATABASE_URL comes from %s, not a secretKeyRef", c.Name, v.source)
				case v.secretKey.Optional != nil && *v.secretKey.Optional:
					m.failW(w, "database", "container %s's FOLIO_DATABASE_URL secretKeyRef is optional: without it the pod would start on SQLite", c.Name)
				}
			}
		}
	}
}

func (m *manifests) checkDev() {
	for _, p := range sortedPrograms() {
		for _, w := range m.programDeployments(p) {
			if w.replicas != 1 {
				m.failW(w, "replicas", "%d replicas, want 1 in dev", w.replicas)
			}
			if !slices.Contains(stateful, p) {
				continue
			}
			claims := map[string]bool{}
			for _, v := range w.pod.Volumes {
				if v.PersistentVolumeClaim != nil {
					claims[v.Name] = true
				}
			}
			for _, c := range w.pod.Containers {
				if v, ok := m.containerEnv(w, &c)["FOLIO_DATABASE_URL"]; ok && !(v.literal && strings.HasPrefix(v.value, "sqlite:")) {
					m.failW(w, "database", "container %s sets FOLIO_DATABASE_URL from %s; dev keeps each service on SQLite", c.Name, v.source)
				}
				onClaim := false
				for _, vm := range c.VolumeMounts {
					if path.Clean(vm.MountPath) == "/data" && claims[vm.Name] {
						onClaim = true
					}
				}
				if !onClaim {
					m.failW(w, "volumes", "container %s has no PersistentVolumeClaim at /data, so its SQLite database dies with the pod", c.Name)
				}
			}
		}
	}
}

// A peer is a pod (or a client outside the cluster) that may try to connect.
type peer struct {
	name      string // the program, or one of the constants above
	namespace string
	podLabels map[string]string
	outside   bool
}

// peers are every kind of caller a policy must be read against: each workload
// of the render, Prometheus here and elsewhere, strangers here and elsewhere,
// and the world outside.
func (m *manifests) peers(namespace string) []peer {
	ps := []peer{
		{name: promHere, namespace: namespace, podLabels: map[string]string{nameLabel: "prometheus"}},
		{name: promAway, namespace: namespace + "-monitoring", podLabels: map[string]string{nameLabel: "prometheus"}},
		{name: otherHere, namespace: namespace, podLabels: map[string]string{nameLabel: "stranger"}},
		{name: otherAway, namespace: namespace + "-elsewhere", podLabels: map[string]string{nameLabel: "stranger"}},
		{name: outsideNet, outside: true},
	}
	for _, w := range m.workloads {
		ps = append(ps, peer{name: w.program, namespace: w.namespace, podLabels: w.podLabels})
	}
	return ps
}

func admits(np *networkingv1.NetworkPolicy, from networkingv1.NetworkPolicyPeer, p peer) bool {
	if from.IPBlock != nil {
		// An address block lets in whatever it covers; read it as everything
		// outside the cluster, which is what it is for.
		return p.outside
	}
	if p.outside {
		return false
	}
	if from.NamespaceSelector == nil {
		return p.namespace == np.Namespace && selects(from.PodSelector, p.podLabels)
	}
	if !selects(from.NamespaceSelector, map[string]string{nsNameLabel: p.namespace}) {
		return false
	}
	return from.PodSelector == nil || selects(from.PodSelector, p.podLabels)
}

func portMatches(rule networkingv1.NetworkPolicyIngressRule, port corev1.ContainerPort) bool {
	if len(rule.Ports) == 0 {
		return true
	}
	proto := port.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range rule.Ports {
		ruleProto := corev1.ProtocolTCP
		if p.Protocol != nil {
			ruleProto = *p.Protocol
		}
		if ruleProto != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.StrVal != "":
			if p.Port.StrVal == port.Name {
				return true
			}
		default:
			lo, hi := p.Port.IntVal, p.Port.IntVal
			if p.EndPort != nil {
				hi = *p.EndPort
			}
			if port.ContainerPort >= lo && port.ContainerPort <= hi {
				return true
			}
		}
	}
	return false
}

func ingressPolicy(np *networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

func emptySelector(s metav1.LabelSelector) bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// allowed returns the names of the peers the render's NetworkPolicies let into
// port of w's pods: the union over the policies selecting the pods (with none,
// the pods are not isolated and everyone gets in).
func (m *manifests) allowed(w *workload, port corev1.ContainerPort) map[string]bool {
	ps := m.peers(w.namespace)
	in := map[string]bool{}
	isolated := false
	for _, np := range m.netpols {
		if np.Namespace != w.namespace || !ingressPolicy(np) || !selects(&np.Spec.PodSelector, w.podLabels) {
			continue
		}
		isolated = true
		for _, rule := range np.Spec.Ingress {
			if !portMatches(rule, port) {
				continue
			}
			for _, p := range ps {
				if len(rule.From) == 0 {
					in[p.name] = true
				}
				for _, from := range rule.From {
					if admits(np, from, p) {
						in[p.name] = true
					}
				}
			}
		}
	}
	if !isolated {
		for _, p := range ps {
			in[p.name] = true
		}
	}
	return in
}

func (m *manifests) checkNetworkPolicies() {
	namespaces := map[string]bool{}
	for _, w := range m.workloads {
		namespaces[w.namespace] = true
	}
	for ns := range namespaces {
		found := false
		for _, np := range m.netpols {
			if np.Namespace == ns && emptySelector(np.Spec.PodSelector) &&
				slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && len(np.Spec.Ingress) == 0 {
				found = true
			}
		}
		if !found {
			m.fail("NetworkPolicy", "", "network", "namespace %q has no default-deny-ingress policy (empty podSelector, Ingress, no rules)", ns)
		}
	}

	for _, w := range m.workloads {
		own := false
		for _, np := range m.netpols {
			if np.Namespace == w.namespace && !emptySelector(np.Spec.PodSelector) && selects(&np.Spec.PodSelector, w.podLabels) {
				own = true
			}
		}
		if !own {
			m.failW(w, "network", "no NetworkPolicy of its own selects its pods")
		}
		for _, c := range w.pod.Containers {
			for _, port := range c.Ports {
				m.checkPort(w, port)
			}
		}
	}
}

func (m *manifests) checkPort(w *workload, port corev1.ContainerPort) {
	in := m.allowed(w, port)
	where := fmt.Sprintf("port %s (%d)", port.Name, port.ContainerPort)
	if w.program == "gateway" && port.Name == "http" {
		if !in[outsideNet] {
			m.failW(w, "network", "%s is closed to clients outside the cluster", where)
		}
		return
	}
	var want []string
	switch {
	case w.program == "nats" && port.Name == "client":
		want = sortedPrograms()
	case port.Name == "http" && httpPeers[w.program] != nil:
		want = httpPeers[w.program]
	case port.Name == "metrics":
		want = prometheusPeers
	}
	got := make([]string, 0, len(in))
	for name := range in {
		got = append(got, name)
	}
	sort.Strings(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		if want == nil {
			want = []string{}
		}
		m.failW(w, "network", "%s lets in %s, want exactly %s", where, listOrNone(got), listOrNone(want))
	}
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "no one"
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// checkPorts: a program's container ports are named http and metrics (what the
// probes, Services and NetworkPolicies refer to), metrics is http + 1000, and
// both are the ports the program listens on.
func (m *manifests) checkPorts(w *workload) {
	for _, c := range w.pod.Containers {
		env := m.containerEnv(w, &c)
		http, okHTTP := containerPort(&c, "http")
		metrics, okMetrics := containerPort(&c, "metrics")
		if !okHTTP || !okMetrics {
			m.failW(w, "ports", "container %s lacks a port named http or metrics", c.Name)
			continue
		}
		if metrics.ContainerPort != http.ContainerPort+1000 {
			m.failW(w, "ports", "container %s serves metrics on %d, not http %d + 1000", c.Name, metrics.ContainerPort, http.ContainerPort)
		}
		for _, p := range []struct {
			port corev1.ContainerPort
			env  string
		}{{http, "FOLIO_HTTP_ADDR"}, {metrics, "FOLIO_METRICS_ADDR"}} {
			v, ok := env[p.env]
			if !ok || !v.literal {
				continue
			}
			if n, ok := listenPort(v.value); !ok || n != p.port.ContainerPort {
				m.failW(w, "ports", "container %s: port %s is %d but %s is %q", c.Name, p.port.Name, p.port.ContainerPort, p.env, v.value)
			}
		}
	}
}

// listenPort is the port of an address like 0.0.0.0:8081.
func listenPort(addr string) (int32, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	return int32(n), err == nil
}
