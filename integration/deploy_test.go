package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// k8sPort is a container or service port.
type k8sPort struct {
	Name          string `yaml:"name"`
	Port          int    `yaml:"port"`
	TargetPort    any    `yaml:"targetPort"`
	ContainerPort int    `yaml:"containerPort"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		// Service
		ClusterIP                string         `yaml:"clusterIP"`
		PublishNotReadyAddresses bool           `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]any `yaml:"selector"` // a Service's labels; a StatefulSet's matchLabels
		Ports                    []k8sPort      `yaml:"ports"`
		// StatefulSet
		ServiceName         string `yaml:"serviceName"`
		Replicas            int    `yaml:"replicas"`
		PodManagementPolicy string `yaml:"podManagementPolicy"`
		Template            struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []struct {
					Ports []k8sPort `yaml:"ports"`
					Env   []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom *struct {
							FieldRef struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
					LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
					VolumeMounts   []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

// TestKubernetesManifest parses deploy/kubernetes/warren.yaml (no
// Kubernetes runs here) and checks that its parts agree: the seeds are the
// StatefulSet's pods under its headless Service on the cluster port, the
// node name follows the pod's name, the probes ask the health endpoint on
// the HTTP port, the data directory is the claim's mount, and the Services
// select the pods.
func TestKubernetesManifest(t *testing.T) {
	warrenOnly(t, "checks Warren's Kubernetes manifest; no broker involved")
	raw, err := os.ReadFile("../deploy/kubernetes/warren.yaml")
	require.NoError(t, err)
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	sts, ok := objs["StatefulSet/warren"]
	require.True(t, ok, "a StatefulSet named warren")
	headless, ok := objs["Service/"+sts.Spec.ServiceName]
	require.True(t, ok, "the StatefulSet's serviceName is a Service in the file")
	require.Equal(t, "None", headless.Spec.ClusterIP, "headless")
	require.True(t, headless.Spec.PublishNotReadyAddresses, "pods resolve their own names before they are ready (to find themselves among the seeds)")
	require.Equal(t, "Parallel", sts.Spec.PodManagementPolicy, "the seeds start together: a majority must be up to elect")
	labels := sts.Spec.Template.Metadata.Labels
	for _, svc := range []k8sObject{headless, objs["Service/warren"]} {
		require.NotEmpty(t, svc.Spec.Selector)
		for k, v := range svc.Spec.Selector {
			require.Equal(t, v, labels[k], "Service %s selects the pods", svc.Metadata.Name)
		}
	}

	require.Len(t, sts.Spec.Template.Spec.Containers, 1)
	c := sts.Spec.Template.Spec.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	env := map[string]string{}
	podNameVar := ""
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			podNameVar = e.Name
		}
	}
	require.NotEmpty(t, podNameVar, "an env var with the pod's name")
	clusterPort := ports["cluster"]
	require.Equal(t, fmt.Sprintf(":%d", clusterPort), env["WARREN_CLUSTER_LISTEN"])
	var want []string
	for i := range sts.Spec.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Metadata.Name, i, sts.Spec.ServiceName, clusterPort))
	}
	require.Equal(t, strings.Join(want, ","), env["WARREN_CLUSTER_SEEDS"], "one seed per replica, by pod DNS name")
	require.Equal(t, "warren@$("+podNameVar+")."+sts.Spec.ServiceName, env["WARREN_NODE_NAME"], "node name from the pod's name")
	var headlessCluster bool
	for _, p := range headless.Spec.Ports {
		if p.Port == clusterPort {
			headlessCluster = true
		}
	}
	require.True(t, headlessCluster, "the headless Service has the cluster port")
	for _, p := range append(headless.Spec.Ports, objs["Service/warren"].Spec.Ports...) {
		name, _ := p.TargetPort.(string)
		require.Contains(t, ports, name, "Service port %s targets a named container port", p.Name)
	}

	for what, pr := range map[string]*k8sProbe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		require.NotNil(t, pr, what)
		require.Equal(t, "/api/health/checks/alive", pr.HTTPGet.Path, what)
		require.Equal(t, "http", pr.HTTPGet.Port, what)
	}
	require.Equal(t, 15672, ports["http"], "the HTTP port is Warren's default --http-listen")
	require.Equal(t, 5672, ports["amqp"])
	require.Len(t, sts.Spec.VolumeClaimTemplates, 1)
	claim := sts.Spec.VolumeClaimTemplates[0].Metadata.Name
	var mounted string
	for _, m := range c.VolumeMounts {
		if m.Name == claim {
			mounted = m.MountPath
		}
	}
	require.NotEmpty(t, mounted, "the claim is mounted")
	require.Equal(t, mounted, env["WARREN_DATA_DIR"], "the data directory is on the claim")
}

// TestComposeClusterProfile: docker-compose's cluster profile has three
// nodes that name each other by service name on the cluster port, each with
// its own node name, volume and host ports.
func TestComposeClusterProfile(t *testing.T) {
	warrenOnly(t, "checks Warren's compose file; no broker involved")
	dc, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose not found (run `make client-deps`): %v", err)
	}
	out, err := exec.Command(dc, "-f", "../docker-compose.yml", "--profile", "cluster", "config").Output()
	require.NoError(t, err, string(out))
	var cfg struct {
		Services map[string]struct {
			Profiles    []string          `yaml:"profiles"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Ports       []struct {
				Published any `yaml:"published"`
				Target    int `yaml:"target"`
			} `yaml:"ports"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(out, &cfg))
	seeds := "warren1:25672,warren2:25672,warren3:25672"
	published := map[string]bool{}
	for _, name := range []string{"warren1", "warren2", "warren3"} {
		s, ok := cfg.Services[name]
		require.True(t, ok, name)
		require.Equal(t, []string{"cluster"}, s.Profiles)
		require.Equal(t, seeds, s.Environment["WARREN_CLUSTER_SEEDS"])
		require.Equal(t, ":25672", s.Environment["WARREN_CLUSTER_LISTEN"])
		require.Equal(t, "warren@"+name, s.Environment["WARREN_NODE_NAME"])
		require.Equal(t, []string{name + "-data:/var/lib/warren:rw"}, s.Volumes)
		for _, p := range s.Ports {
			k := fmt.Sprint(p.Published)
			require.False(t, published[k], "host port %s published once", k)
			published[k] = true
		}
	}
	for _, p := range cfg.Services["warren"].Ports {
		require.False(t, published[fmt.Sprint(p.Published)], "the cluster nodes' host ports differ from the single node's")
	}
}
