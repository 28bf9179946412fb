package k8s

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kinds are the API types Folio's manifests may use. Anything else in a render
// is an error: a kind the policy does not know is a kind it does not check.
var kinds = map[string]func() runtime.Object{
	"apps/v1 Deployment":                     func() runtime.Object { return &appsv1.Deployment{} },
	"apps/v1 StatefulSet":                    func() runtime.Object { return &appsv1.StatefulSet{} },
	"v1 Service":                             func() runtime.Object { return &corev1.Service{} },
	"v1 ConfigMap":                           func() runtime.Object { return &corev1.ConfigMap{} },
	"v1 Secret":                              func() runtime.Object { return &corev1.Secret{} },
	"v1 PersistentVolumeClaim":               func() runtime.Object { return &corev1.PersistentVolumeClaim{} },
	"v1 Namespace":                           func() runtime.Object { return &corev1.Namespace{} },
	"v1 ServiceAccount":                      func() runtime.Object { return &corev1.ServiceAccount{} },
	"policy/v1 PodDisruptionBudget":          func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1 NetworkPolicy":     func() runtime.Object { return &networkingv1.NetworkPolicy{} },
}

// decode turns one manifest into its k8s.io/api type the way the API server's
// strict field validation does: keys match case-sensitively, and an unknown or
// duplicated field is an error instead of being dropped, so a misspelt field
// (which kubectl apply would drop with a warning at best) fails here.
func decode(doc []byte) (runtime.Object, error) {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &tm); err != nil {
		return nil, err
	}
	newObject, ok := kinds[tm.APIVersion+" "+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %q of apiVersion %q is not one the policy checks", tm.Kind, tm.APIVersion)
	}
	obj := newObject()
	strict, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return obj, nil
}

// render builds a kustomization directory with the kustomize library kubectl
// embeds and decodes every resource of the result.
func render(dir string) ([]runtime.Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	var errs []error
	for _, res := range rm.Resources() {
		doc, err := res.AsYAML()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", res.CurId(), err))
			continue
		}
		obj, err := decode(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", res.CurId(), err))
			continue
		}
		objs = append(objs, obj)
	}
	return objs, errors.Join(errs...)
}

// overlays lists deploy/k8s/overlays/*: every overlay is rendered and checked,
// so a new one cannot be added without meeting the policy.
func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("overlays")
	if err != nil {
		t.Fatalf("listing the overlays: %v", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no overlay under deploy/k8s/overlays")
	}
	return names
}

func TestDecodeIsStrict(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"misspelt field", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: book}
spec:
  replica: 3
`, "replica"},
		{"field in the wrong case", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: book}
spec:
  Replicas: 3
`, "Replicas"},
		{"field in the wrong place", `
apiVersion: v1
kind: Service
metadata: {name: book}
spec:
  ports:
    - port: 8081
      containerPort: 8081
`, "containerPort"},
		{"duplicated field", `
apiVersion: v1
kind: ConfigMap
metadata: {name: folio-config}
data:
  FOLIO_SHUTDOWN_DELAY: 5s
  FOLIO_SHUTDOWN_DELAY: 0s
`, "FOLIO_SHUTDOWN_DELAY"},
		{"unknown kind", `
apiVersion: batch/v1
kind: CronJob
metadata: {name: sweep}
`, "CronJob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode = %v, want an error naming %q", err, tc.want)
			}
		})
	}

	obj, err := decode([]byte(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: book}
spec:
  replicas: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := obj.(*appsv1.Deployment); !ok || d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Fatalf("decode = %#v, want a Deployment of 3 replicas", obj)
	}
}

func TestRenderRefusesABrokenKustomization(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "resources: [deployment.yaml]\n")
	write("deployment.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: book}\nspec: {replica: 3}\n")
	if _, err := render(dir); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("render of a misspelt Deployment = %v, want an error naming the field", err)
	}
	write("kustomization.yaml", "resources: [missing.yaml]\n")
	if _, err := render(dir); err == nil {
		t.Fatal("render of a kustomization naming a missing file succeeded")
	}
}
