package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDockerFiles checks what can be checked without a Docker engine (none
// runs on these machines): docker-compose parses the compose file with and
// without the rabbitmq profile, and the Dockerfile's build commands produce
// static binaries that start. Building and running the image is not checked.
func TestDockerFiles(t *testing.T) {
	warrenOnly(t, "checks Warren's Dockerfile and compose file; no broker involved")
	dc, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose not found (run `make client-deps`): %v", err)
	}
	out, err := exec.Command(dc, "-f", "../docker-compose.yml", "config", "--services").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, []string{"warren", "rabbitmq", "warren1", "warren2", "warren3"}, strings.Fields(string(out)), "docker-compose 1.29 lists profiled services too")
	out, err = exec.Command(dc, "-f", "../docker-compose.yml", "--profile", "rabbitmq", "config").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, port := range []string{"5672", "15672", "15692"} {
		require.Regexp(t, `published: `+port+`\n\s+target: `+port+`\n`, string(out), "warren publishes %s", port)
	}
	for _, want := range []string{"warren-data:/var/lib/warren", "rabbitmq:3.10-management", "profiles:\n    - rabbitmq"} {
		require.Contains(t, string(out), want)
	}

	df, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	// The same build the Dockerfile runs: static binaries.
	re := regexp.MustCompile(`go build -trimpath -ldflags="-s -w" -o /out/(\w+) \./cmd/(\w+)`)
	builds := re.FindAllStringSubmatch(string(df), -1)
	require.Len(t, builds, 2)
	dir := t.TempDir()
	for _, b := range builds {
		bin := filepath.Join(dir, b[1])
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../cmd/"+b[2])
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		out, err = exec.Command("file", bin).CombinedOutput()
		require.NoError(t, err)
		require.Contains(t, string(out), "statically linked", b[1])
	}
	// The health check command exists and answers --help.
	out, err = exec.Command(filepath.Join(dir, "warrenctl"), "health", "--help").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(df), `"/usr/local/bin/warrenctl", "--url", "http://127.0.0.1:15672", "health"`)
	require.Contains(t, string(df), "USER 65532:65532")
}
