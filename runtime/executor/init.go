package executor

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's cgo constructor runs before the Go runtime in the
	// re-executed init and joins the container's namespaces, which a
	// multi-threaded Go process cannot do itself.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// InitArg is the argument libcontainer re-executes the running binary
// with to become a container's init.
const InitArg = "init"

// Init turns this process into a container's init when libcontainer
// re-executed it as such (os.Args[1] == "init") and then never returns;
// otherwise it returns at once. Call it first thing in main, or in TestMain
// of tests that start containers, before flags are parsed.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		libcontainer.Init()
	}
}
