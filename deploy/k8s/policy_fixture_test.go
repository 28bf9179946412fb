package k8s

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The tests below show that checkPolicy can fail: each starts from a small
// hand-made render that keeps the policy and breaks one rule of it.

const ns = "folio"

func ptr[T any](v T) *T { return &v }

func meta(name, program string) metav1.ObjectMeta {
	l := map[string]string{partOfLabel: "folio"}
	if program != "" {
		l[nameLabel] = program
	}
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l}
}

func podLabels(program string) map[string]string {
	return map[string]string{nameLabel: program, partOfLabel: "folio"}
}

func byName(program string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{nameLabel: program}}
}

func fromProgram(program string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: byName(program)}
}

func onPort(name string) []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromString(name))}}
}

func resources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

func containerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

func podSecurity() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		RunAsUser:      ptr(int64(65532)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func httpProbe(path string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}}}
}

// fixture is a render that keeps the policy of the named overlay: dev's one
// replica on SQLite volumes, prod's three on PostgreSQL, two elsewhere.
func fixture(overlay string) []runtime.Object {
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{partOfLabel: "folio"}}},
		&corev1.ConfigMap{ObjectMeta: meta("folio-config", ""), Data: map[string]string{
			"FOLIO_SHUTDOWN_DELAY": "5s", "FOLIO_SHUTDOWN_TIMEOUT": "15s",
		}},
		&networkingv1.NetworkPolicy{ObjectMeta: meta("default-deny-ingress", ""), Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}},
	}
	replicas := int32(2)
	switch overlay {
	case "prod":
		replicas = 3
	case "dev":
		replicas = 1
	}
	for _, p := range sortedPrograms() {
		port := programs[p]
		c := corev1.Container{
			Name:  p,
			Image: "folio/" + p + ":0.1.0",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}, {Name: "metrics", ContainerPort: port + 1000}},
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "folio-config"}}}},
			Env: []corev1.EnvVar{
				{Name: "FOLIO_HTTP_ADDR", Value: fmt.Sprintf("0.0.0.0:%d", port)},
				{Name: "FOLIO_METRICS_ADDR", Value: fmt.Sprintf("0.0.0.0:%d", port+1000)},
				{Name: "FOLIO_NATS_NKEY_FILE", Value: "/etc/folio/secrets/nats.nk"},
			},
			StartupProbe:    httpProbe("/healthz"),
			LivenessProbe:   httpProbe("/healthz"),
			ReadinessProbe:  httpProbe("/readyz"),
			Resources:       resources(),
			SecurityContext: containerSecurity(),
			VolumeMounts: []corev1.VolumeMount{
				{Name: "data", MountPath: "/data"},
				{Name: "secrets", MountPath: "/etc/folio/secrets", ReadOnly: true},
			},
		}
		switch p {
		case "payment":
			c.Env = append(c.Env, corev1.EnvVar{Name: "FOLIO_PAYMENT_CARD_KEY_FILE", Value: "/etc/folio/secrets/card.key"})
		case "order":
			c.Env = append(c.Env, corev1.EnvVar{Name: "FOLIO_PAYMENT_CARD_PUBLIC_KEY", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "folio-order"}, Key: "payment-card-public-key"}}})
		}
		data := corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		strategy := appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType}
		if slices.Contains(stateful, p) {
			switch overlay {
			case "prod":
				c.Env = append(c.Env, corev1.EnvVar{Name: "FOLIO_DATABASE_URL", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "folio-" + p}, Key: "database-url"}}})
			case "dev":
				data.VolumeSource = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p + "-data"}}
				strategy.Type = appsv1.RecreateDeploymentStrategyType
				objs = append(objs, &corev1.PersistentVolumeClaim{ObjectMeta: meta(p+"-data", p), Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}})
			}
		}
		objs = append(objs,
			&appsv1.Deployment{ObjectMeta: meta(p, p), Spec: appsv1.DeploymentSpec{
				Replicas: ptr(replicas),
				Selector: byName(p),
				Strategy: strategy,
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: podLabels(p)},
					Spec: corev1.PodSpec{
						TerminationGracePeriodSeconds: ptr(int64(30)),
						SecurityContext:               podSecurity(),
						TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
							MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: byName(p)}},
						Containers: []corev1.Container{c},
						Volumes: []corev1.Volume{data, {Name: "secrets", VolumeSource: corev1.VolumeSource{
							Secret: &corev1.SecretVolumeSource{SecretName: "folio-" + p}}}},
					},
				},
			}},
			&corev1.Service{ObjectMeta: meta(p, p), Spec: corev1.ServiceSpec{
				Selector: map[string]string{nameLabel: p},
				Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromString("http")}},
			}},
			&policyv1.PodDisruptionBudget{ObjectMeta: meta(p, p), Spec: policyv1.PodDisruptionBudgetSpec{
				MaxUnavailable: ptr(intstr.FromInt32(1)), Selector: byName(p)}},
		)
		metrics := networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: byName("prometheus")}},
			Ports: onPort("metrics"),
		}
		http := networkingv1.NetworkPolicyIngressRule{Ports: onPort("http")}
		for _, peer := range httpPeers[p] {
			http.From = append(http.From, fromProgram(peer))
		}
		// A rule without peers would let everyone in: a port closed to all has none.
		ingress := []networkingv1.NetworkPolicyIngressRule{metrics}
		if len(http.From) > 0 || p == "gateway" {
			ingress = []networkingv1.NetworkPolicyIngressRule{http, metrics}
		}
		objs = append(objs, &networkingv1.NetworkPolicy{ObjectMeta: meta(p, p), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *byName(p),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     ingress,
		}})
	}
	if overlay != "dev" {
		for _, p := range autoscaled {
			objs = append(objs, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: meta(p, p), Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: p},
				MinReplicas:    ptr(replicas), MaxReplicas: 6,
			}})
		}
	}

	natsPeers := []networkingv1.NetworkPolicyPeer{}
	for _, p := range sortedPrograms() {
		natsPeers = append(natsPeers, fromProgram(p))
	}
	objs = append(objs,
		&appsv1.StatefulSet{ObjectMeta: meta("nats", "nats"), Spec: appsv1.StatefulSetSpec{
			Replicas: ptr(int32(1)),
			Selector: byName("nats"),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels("nats")},
				Spec: corev1.PodSpec{
					SecurityContext: podSecurity(),
					Containers: []corev1.Container{{
						Name:            "nats",
						Image:           "folio/nats:0.1.0",
						Ports:           []corev1.ContainerPort{{Name: "client", ContainerPort: 4222}},
						StartupProbe:    &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("client")}}},
						LivenessProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("client")}}},
						ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("client")}}},
						Resources:       resources(),
						SecurityContext: containerSecurity(),
						VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}},
		}},
		&corev1.Service{ObjectMeta: meta("nats", "nats"), Spec: corev1.ServiceSpec{
			Selector: map[string]string{nameLabel: "nats"},
			Ports:    []corev1.ServicePort{{Name: "client", Port: 4222, TargetPort: intstr.FromString("client")}},
		}},
		&policyv1.PodDisruptionBudget{ObjectMeta: meta("nats", "nats"), Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr(intstr.FromInt32(1)), Selector: byName("nats")}},
		&networkingv1.NetworkPolicy{ObjectMeta: meta("nats", "nats"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *byName("nats"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: natsPeers, Ports: onPort("client")}},
		}},
	)
	return objs
}

// find returns the object of the given type and name in objs.
func find[T interface {
	runtime.Object
	GetName() string
}](objs []runtime.Object, name string) T {
	for _, o := range objs {
		if t, ok := o.(T); ok && t.GetName() == name {
			return t
		}
	}
	panic("fixture has no " + name)
}

func without[T interface {
	runtime.Object
	GetName() string
}](objs []runtime.Object, name string) []runtime.Object {
	return slices.DeleteFunc(objs, func(o runtime.Object) bool {
		t, ok := o.(T)
		return ok && t.GetName() == name
	})
}

func deployment(objs []runtime.Object, name string) *appsv1.Deployment {
	return find[*appsv1.Deployment](objs, name)
}

func container(objs []runtime.Object, name string) *corev1.Container {
	return &deployment(objs, name).Spec.Template.Spec.Containers[0]
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

func TestFixturesKeepThePolicy(t *testing.T) {
	for _, overlay := range []string{"base", "dev", "prod"} {
		if v := checkPolicy(overlay, fixture(overlay)); len(v) > 0 {
			t.Errorf("the %s fixture breaks the policy:\n%s", overlay, strings.Join(v, "\n"))
		}
	}
}

func TestPolicyFailsABrokenRender(t *testing.T) {
	for _, tc := range []struct {
		name    string
		overlay string
		breakIt func(objs []runtime.Object) []runtime.Object
		want    string // a substring of a violation
	}{
		{"container without limits", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "book").Resources.Limits = nil
			return objs
		}, "base: Deployment/book: resources: container book has no cpu limit"},
		{"container without a memory request", "base", func(objs []runtime.Object) []runtime.Object {
			delete(container(objs, "auth").Resources.Requests, corev1.ResourceMemory)
			return objs
		}, "Deployment/auth: resources: container auth has no memory request"},
		{"Deployment without PDB", "base", func(objs []runtime.Object) []runtime.Object {
			return without[*policyv1.PodDisruptionBudget](objs, "author")
		}, "base: Deployment/author: pdb: matched by 0 PodDisruptionBudgets"},
		{"two PDBs over one Deployment", "base", func(objs []runtime.Object) []runtime.Object {
			pdb := find[*policyv1.PodDisruptionBudget](objs, "book").DeepCopy()
			pdb.Name = "book-2"
			return append(objs, pdb)
		}, "Deployment/book: pdb: matched by 2 PodDisruptionBudgets [book book-2]"},
		{"NetworkPolicy letting everyone into book", "base", func(objs []runtime.Object) []runtime.Object {
			np := find[*networkingv1.NetworkPolicy](objs, "book")
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: onPort("http")})
			return objs
		}, "Deployment/book: network: port http (8081) lets in [a pod of another namespace, another pod of the namespace, auth, author, book, gateway, inventory, nats, notify, order, outside the cluster, payment, prometheus in another namespace, prometheus in the namespace], want exactly [author, gateway]"},
		{"ipBlock into book", "base", func(objs []runtime.Object) []runtime.Object {
			np := find[*networkingv1.NetworkPolicy](objs, "book")
			np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}})
			return objs
		}, "port http (8081) lets in [author, gateway, outside the cluster], want exactly [author, gateway]"},
		{"a missing peer", "base", func(objs []runtime.Object) []runtime.Object {
			np := find[*networkingv1.NetworkPolicy](objs, "auth")
			np.Spec.Ingress[0].From = np.Spec.Ingress[0].From[:3]
			return objs
		}, "Deployment/auth: network: port http (8083) lets in [author, book, gateway], want exactly [author, book, gateway, inventory, notify, order, payment]"},
		{"the gateway into payment", "base", func(objs []runtime.Object) []runtime.Object {
			np := find[*networkingv1.NetworkPolicy](objs, "payment")
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From: []networkingv1.NetworkPolicyPeer{fromProgram("gateway")}, Ports: onPort("http")})
			return objs
		}, "Deployment/payment: network: port http (8086) lets in [gateway], want exactly no one"},
		{"the order service without a policy of its own", "base", func(objs []runtime.Object) []runtime.Object {
			return without[*networkingv1.NetworkPolicy](objs, "order")
		}, "Deployment/order: network: no NetworkPolicy of its own selects its pods"},
		{"nats closed to inventory", "base", func(objs []runtime.Object) []runtime.Object {
			np := find[*networkingv1.NetworkPolicy](objs, "nats")
			np.Spec.Ingress[0].From = slices.DeleteFunc(np.Spec.Ingress[0].From, func(p networkingv1.NetworkPolicyPeer) bool {
				return p.PodSelector.MatchLabels[nameLabel] == "inventory"
			})
			return objs
		}, "StatefulSet/nats: network: port client (4222) lets in [auth, author, book, gateway, notify, order, payment], want exactly [auth, author, book, gateway, inventory, notify, order, payment]"},
		{"a rule without ports opens metrics to callers", "base", func(objs []runtime.Object) []runtime.Object {
			find[*networkingv1.NetworkPolicy](objs, "notify").Spec.Ingress[0].Ports = nil
			return objs
		}, "Deployment/notify: network: port metrics (9084) lets in [gateway, prometheus in another namespace, prometheus in the namespace]"},
		{"metrics for Prometheus of the namespace only", "base", func(objs []runtime.Object) []runtime.Object {
			find[*networkingv1.NetworkPolicy](objs, "gateway").Spec.Ingress[1].From[0].NamespaceSelector = nil
			return objs
		}, "Deployment/gateway: network: port metrics (9080) lets in [prometheus in the namespace], want exactly [prometheus in another namespace, prometheus in the namespace]"},
		{"gateway closed to the outside", "base", func(objs []runtime.Object) []runtime.Object {
			find[*networkingv1.NetworkPolicy](objs, "gateway").Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{fromProgram("book")}
			return objs
		}, "Deployment/gateway: network: port http (8080) is closed to clients outside the cluster"},
		{"no default deny", "base", func(objs []runtime.Object) []runtime.Object {
			return without[*networkingv1.NetworkPolicy](objs, "default-deny-ingress")
		}, `network: namespace "folio" has no default-deny-ingress policy`},
		{"nats without a policy of its own", "base", func(objs []runtime.Object) []runtime.Object {
			return without[*networkingv1.NetworkPolicy](objs, "nats")
		}, "StatefulSet/nats: network: no NetworkPolicy of its own selects its pods"},
		{"no readiness probe", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "gateway").ReadinessProbe = nil
			return objs
		}, "Deployment/gateway: probes: container gateway has no readiness probe"},
		{"liveness on /readyz", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "book").LivenessProbe = httpProbe("/readyz")
			return objs
		}, `Deployment/book: probes: container book liveness probe asks for "/readyz", want /healthz`},
		{"readiness on the metrics port", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "book").ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9081)
			return objs
		}, "Deployment/book: probes: container book readiness probe asks port 9081, want the http port"},
		{"root allowed", "base", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "notify").Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil
			return objs
		}, "Deployment/notify: security: container notify does not set runAsNonRoot: true"},
		{"container overrides the pod's non-root", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "notify").SecurityContext.RunAsNonRoot = ptr(false)
			return objs
		}, "Deployment/notify: security: container notify does not set runAsNonRoot: true"},
		{"container overrides the pod's seccomp profile", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "book").SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			return objs
		}, "Deployment/book: security: container book does not run under the RuntimeDefault seccomp profile"},
		{"writable root", "base", func(objs []runtime.Object) []runtime.Object {
			find[*appsv1.StatefulSet](objs, "nats").Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = nil
			return objs
		}, "StatefulSet/nats: security: container nats does not set readOnlyRootFilesystem: true"},
		{"privilege escalation", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "auth").SecurityContext.AllowPrivilegeEscalation = nil
			return objs
		}, "Deployment/auth: security: container auth does not set allowPrivilegeEscalation: false"},
		{"capabilities kept", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "auth").SecurityContext.Capabilities.Drop = []corev1.Capability{"NET_RAW"}
			return objs
		}, "Deployment/auth: security: container auth does not drop ALL capabilities"},
		{"image without tag", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "book").Image = "registry.invalid:5000/folio/book"
			return objs
		}, `Deployment/book: image: container book image "registry.invalid:5000/folio/book" has no tag`},
		{"image :latest", "base", func(objs []runtime.Object) []runtime.Object {
			container(objs, "book").Image = "folio/book:latest"
			return objs
		}, `Deployment/book: image: container book image "folio/book:latest" is :latest`},
		{"grace period too short for the configured shutdown", "base", func(objs []runtime.Object) []runtime.Object {
			find[*corev1.ConfigMap](objs, "folio-config").Data["FOLIO_SHUTDOWN_TIMEOUT"] = "25s"
			return objs
		}, "Deployment/book: shutdown: terminationGracePeriodSeconds 30 is not longer than container book's FOLIO_SHUTDOWN_DELAY 5s + 1s + FOLIO_SHUTDOWN_TIMEOUT 25s"},
		{"env overrides the ConfigMap", "base", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "author"), "FOLIO_SHUTDOWN_DELAY", "14s")
			return objs
		}, "Deployment/author: shutdown: terminationGracePeriodSeconds 30 is not longer than container author's FOLIO_SHUTDOWN_DELAY 14s + 1s + FOLIO_SHUTDOWN_TIMEOUT 15s"},
		{"no shutdown delay and no preStop", "base", func(objs []runtime.Object) []runtime.Object {
			delete(find[*corev1.ConfigMap](objs, "folio-config").Data, "FOLIO_SHUTDOWN_DELAY")
			return objs
		}, "Deployment/gateway: shutdown: container gateway has neither a FOLIO_SHUTDOWN_DELAY above 0 nor a preStop hook"},
		{"shutdown delay not a duration", "base", func(objs []runtime.Object) []runtime.Object {
			find[*corev1.ConfigMap](objs, "folio-config").Data["FOLIO_SHUTDOWN_DELAY"] = "5"
			return objs
		}, `Deployment/book: shutdown: container book: FOLIO_SHUTDOWN_DELAY "5" (from ConfigMap folio-config) is not a duration`},
		{"envFrom a ConfigMap not in the render", "base", func(objs []runtime.Object) []runtime.Object {
			return without[*corev1.ConfigMap](objs, "folio-config")
		}, "Deployment/book: env: container book takes its env from ConfigMap folio-config, which is not in the render"},
		{"no topology spread", "base", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "author").Spec.Template.Spec.TopologySpreadConstraints = nil
			return objs
		}, "Deployment/author: spread: no topologySpreadConstraints"},
		{"topology spread over other pods", "base", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "author").Spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector = byName("book")
			return objs
		}, "Deployment/author: spread: topology spread over kubernetes.io/hostname does not select the Deployment's own pods"},
		{"nats as a Deployment", "base", func(objs []runtime.Object) []runtime.Object {
			sts := find[*appsv1.StatefulSet](objs, "nats")
			return append(without[*appsv1.StatefulSet](objs, "nats"), &appsv1.Deployment{ObjectMeta: sts.ObjectMeta, Spec: appsv1.DeploymentSpec{
				Selector: sts.Spec.Selector, Template: sts.Spec.Template}})
		}, "Deployment/nats: nats: nats must run as a StatefulSet"},
		{"nats data not on its claim", "base", func(objs []runtime.Object) []runtime.Object {
			find[*appsv1.StatefulSet](objs, "nats").Spec.VolumeClaimTemplates[0].Name = "stream"
			return objs
		}, "StatefulSet/nats: nats: container nats mounts no volumeClaimTemplate at /data"},
		{"a program missing", "base", func(objs []runtime.Object) []runtime.Object {
			return without[*appsv1.Deployment](objs, "notify")
		}, "Deployment/notify: program: no workload of notify in the render"},
		{"Service selecting nothing", "base", func(objs []runtime.Object) []runtime.Object {
			find[*corev1.Service](objs, "book").Spec.Selector = map[string]string{nameLabel: "books"}
			return objs
		}, "Service/book: service: selector map[app.kubernetes.io/name:books] matches no workload's pods"},
		{"Service on a port the pods lack", "base", func(objs []runtime.Object) []runtime.Object {
			find[*corev1.Service](objs, "book").Spec.Ports[0].TargetPort = intstr.FromString("web")
			return objs
		}, "Service/book: service: port http targets web, which no container of Deployment book has"},
		{"secret file outside every mount", "base", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "notify"), "FOLIO_SECRETS_KEY_FILE", "/etc/folio/secrets.key")
			return objs
		}, "Deployment/notify: secret-files: container notify: FOLIO_SECRETS_KEY_FILE /etc/folio/secrets.key is under no volume mounted into the container"},
		{"a secret file beside its mount's name", "base", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "book"), "FOLIO_NATS_NKEY_FILE", "/etc/folio/secrets-old/nats.nk")
			return objs
		}, "Deployment/book: secret-files: container book: FOLIO_NATS_NKEY_FILE /etc/folio/secrets-old/nats.nk is under no volume"},
		{"port unlike the listen address", "base", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "author"), "FOLIO_HTTP_ADDR", ":8085")
			return objs
		}, `Deployment/author: ports: container author: port http is 8082 but FOLIO_HTTP_ADDR is ":8085"`},
		{"an unlabelled object", "base", func(objs []runtime.Object) []runtime.Object {
			delete(find[*corev1.Service](objs, "auth").Labels, partOfLabel)
			return objs
		}, "base: Service/auth: labels: no label app.kubernetes.io/part-of: folio"},
		{"an HPA scaling nothing", "base", func(objs []runtime.Object) []runtime.Object {
			find[*autoscalingv2.HorizontalPodAutoscaler](objs, "book").Spec.ScaleTargetRef.Name = "books"
			return objs
		}, "HorizontalPodAutoscaler/book: hpa: scales apps/v1 Deployment/books, which is no Deployment of the render"},
		{"prod without an HPA for author", "prod", func(objs []runtime.Object) []runtime.Object {
			return without[*autoscalingv2.HorizontalPodAutoscaler](objs, "author")
		}, "prod: Deployment/author: hpa: no HorizontalPodAutoscaler scales author"},
		{"payment without its card key", "base", func(objs []runtime.Object) []runtime.Object {
			c := container(objs, "payment")
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "FOLIO_PAYMENT_CARD_KEY_FILE" })
			return objs
		}, "Deployment/payment: card-key: container payment has no FOLIO_PAYMENT_CARD_KEY_FILE"},
		{"payment's card key in its emptyDir", "base", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "payment"), "FOLIO_PAYMENT_CARD_KEY_FILE", "/data/payment-card.key")
			return objs
		}, "Deployment/payment: card-key: container payment: FOLIO_PAYMENT_CARD_KEY_FILE /data/payment-card.key is on no Secret volume"},
		{"payment's card key in plain env", "base", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "payment"), "FOLIO_PAYMENT_CARD_KEY", "c2VjcmV0")
			return objs
		}, "Deployment/payment: card-key: container payment's FOLIO_PAYMENT_CARD_KEY comes from env, not a secretKeyRef"},
		{"order without the public key", "base", func(objs []runtime.Object) []runtime.Object {
			c := container(objs, "order")
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "FOLIO_PAYMENT_CARD_PUBLIC_KEY" })
			return objs
		}, "Deployment/order: card-key: container order has no FOLIO_PAYMENT_CARD_PUBLIC_KEY"},
		{"prod without an HPA for order", "prod", func(objs []runtime.Object) []runtime.Object {
			return without[*autoscalingv2.HorizontalPodAutoscaler](objs, "order")
		}, "prod: Deployment/order: hpa: no HorizontalPodAutoscaler scales order"},
		{"prod payment on SQLite in its emptyDir", "prod", func(objs []runtime.Object) []runtime.Object {
			c := container(objs, "payment")
			c.Env = c.Env[:len(c.Env)-1]
			return objs
		}, "prod: Deployment/payment: database: container payment has no FOLIO_DATABASE_URL"},
		{"prod HPA from one replica", "prod", func(objs []runtime.Object) []runtime.Object {
			find[*autoscalingv2.HorizontalPodAutoscaler](objs, "gateway").Spec.MinReplicas = ptr(int32(1))
			return objs
		}, "prod: HorizontalPodAutoscaler/gateway: hpa: minReplicas below 2"},
		{"prod with two replicas", "prod", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "notify").Spec.Replicas = ptr(int32(2))
			return objs
		}, "prod: Deployment/notify: replicas: 2 replicas, want 3 in prod"},
		{"prod database URL in plain env", "prod", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "book"), "FOLIO_DATABASE_URL", "postgres://folio@db/folio_book")
			return objs
		}, "prod: Deployment/book: database: container book's FOLIO_DATABASE_URL comes from env, not a secretKeyRef"},
		{"prod database URL optional", "prod", func(objs []runtime.Object) []runtime.Object {
			c := container(objs, "auth")
			c.Env[len(c.Env)-1].ValueFrom.SecretKeyRef.Optional = ptr(true)
			return objs
		}, "prod: Deployment/auth: database: container auth's FOLIO_DATABASE_URL secretKeyRef is optional"},
		{"prod without a database URL", "prod", func(objs []runtime.Object) []runtime.Object {
			c := container(objs, "author")
			c.Env = c.Env[:len(c.Env)-1]
			return objs
		}, "prod: Deployment/author: database: container author has no FOLIO_DATABASE_URL"},
		{"dev with two replicas", "dev", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "gateway").Spec.Replicas = ptr(int32(2))
			return objs
		}, "dev: Deployment/gateway: replicas: 2 replicas, want 1 in dev"},
		{"dev on PostgreSQL", "dev", func(objs []runtime.Object) []runtime.Object {
			setEnv(container(objs, "book"), "FOLIO_DATABASE_URL", "postgres://folio@db/folio_book")
			return objs
		}, "dev: Deployment/book: database: container book sets FOLIO_DATABASE_URL from env; dev keeps each service on SQLite"},
		{"dev on an emptyDir", "dev", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "notify").Spec.Template.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
			return objs
		}, "dev: Deployment/notify: volumes: container notify has no PersistentVolumeClaim at /data"},
		{"dev rolling over a ReadWriteOnce claim", "dev", func(objs []runtime.Object) []runtime.Object {
			deployment(objs, "auth").Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
			return objs
		}, `dev: Deployment/auth: rollout: mounts ReadWriteOnce claim auth-data but its strategy is "RollingUpdate", not Recreate`},
		{"dev claim in another namespace", "dev", func(objs []runtime.Object) []runtime.Object {
			find[*corev1.PersistentVolumeClaim](objs, "book-data").Namespace = ""
			return objs
		}, `dev: Deployment/book: volumes: volume data names PersistentVolumeClaim book-data, which is not in the render (it is, in namespace "" instead of "folio")`},
		{"an unknown kind", "base", func(objs []runtime.Object) []runtime.Object {
			return append(objs, &corev1.Pod{ObjectMeta: meta("stray", "book")})
		}, "base: Pod/stray: kind: a kind the policy does not check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := checkPolicy(tc.overlay, tc.breakIt(fixture(tc.overlay)))
			for _, s := range v {
				if strings.Contains(s, tc.want) {
					return
				}
			}
			t.Errorf("no violation contains %q; got:\n%s", tc.want, strings.Join(v, "\n"))
		})
	}
}
