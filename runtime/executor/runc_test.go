package executor_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/feature"
)

// testExecutorEnv names the executor the suite's env uses: unset for
// libcontainer, "runc" for the runc binary.
const testExecutorEnv = "LAYERLAB_TEST_EXECUTOR"

// runcSuite is every test of the executor contract, which the runc
// executor must pass as libcontainer does.
var runcSuite = []string{
	"TestExitCodes", "TestStdio", "TestIsolation", "TestKillAndDelete", "TestDeleteRunning", "TestWaitBeforeStart",
	"TestPauseResume", "TestPurge", "TestTerminal", "TestOOM", "TestCreateErrors", "TestExec", "TestExecTerminal",
}

// TestRuncExecutor runs the executor suite again, in a child test binary,
// with the runc binary as the executor: every test must pass there, none
// may skip.
func TestRuncExecutor(t *testing.T) {
	if os.Getenv(testExecutorEnv) != "" {
		return // this is the child run
	}
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "containers need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		feature.Skip(t, feature.Runc, "runc: %v (make setup installs Debian's runc)", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^("+strings.Join(runcSuite, "|")+")$", "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), testExecutorEnv+"=runc")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the executor suite on runc failed: %v\n%s", err, out)
	}
	for _, name := range runcSuite {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).Match(out) {
			t.Errorf("%s did not pass on runc:\n%s", name, out)
		}
	}
}
