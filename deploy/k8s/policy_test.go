package k8s

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func TestPlaceholder(t *testing.T) {
	_ = krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	_ = filesys.MakeFsOnDisk()
	var d appsv1.Deployment
	_ = yaml.UnmarshalStrict([]byte("{}"), &d)
}
