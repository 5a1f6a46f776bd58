package executor

import (
	"os"
	"runtime"

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

// init keeps the main goroutine on the main thread for the life of the
// process, so no other goroutine ever runs there. libcontainer starts each
// container with a goroutine that locks its thread, setns(2)s it into the
// container's mount namespace and exits, which makes the runtime kill the
// thread, except the main thread, which it cannot kill and parks instead:
// without this the process's main thread (whose view /proc/self shows)
// would stay in the first container's mount namespace, keeping that
// namespace and its mounts (the container's root filesystem, the storage
// under it) alive after the container is deleted. Only an init function
// runs early enough to be sure the main goroutine is on the main thread.
func init() {
	runtime.LockOSThread()
}
