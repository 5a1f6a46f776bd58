"""docker-py (Debian's python3-docker) driving layerlabd's container
operations: exec_run (output, exit code, user, environment, working
directory, stdin-less demux), top, pause/unpause, rename, restart and a
restart policy. Usage: dockerpy_ops.py SOCKET ARCHIVE. Prints one line per
check and exits non-zero at the first failure."""
import sys
import time

import docker
from docker import errors
from dockerpy_common import check, connect

client, _ = connect()

c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="pyops")
r = c.exec_run(["sh", "-c", "echo hi; exit 4"])
check("exec_run exit code and output", r.exit_code == 4 and r.output == b"hi\n", r)
r = c.exec_run(["sh", "-c", "id -u; pwd; echo $A"], user="nobody", workdir="/tmp", environment={"A": "1"})
check("exec_run user, workdir, environment", r.exit_code == 0 and r.output == b"65534\n/tmp\n1\n", r)
r = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
check("exec_run demux", r.output == (b"out\n", b"err\n"), r)
r = c.exec_run(["sh", "-c", "tty"], tty=True)
check("exec_run tty", r.output.startswith(b"/dev/pts/"), r)

top = c.top()
cmds = [p[-1] for p in top["Processes"]]
check("top", "PID" in top["Titles"] and "sleep 300" in cmds, top)

c.pause()
c.reload()
check("pause", c.status == "paused" and c.attrs["State"]["Paused"], c.attrs["State"])
try:
    c.exec_run(["true"])
    check("exec in a paused container refused", False, "ran")
except errors.APIError as e:
    check("exec in a paused container refused", e.status_code == 409 and "paused" in str(e), e)
c.unpause()
c.reload()
check("unpause", c.status == "running", c.status)

c.rename("pyops2")
check("rename", client.containers.get("pyops2").id == c.id)
c.restart(timeout=0)
c.reload()
check("restart", c.status == "running", c.status)
c.remove(force=True)

c = client.containers.run("busybox", ["sh", "-c", "exit 2"], detach=True,
                          restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})
deadline = time.time() + 20
while True:
    c.reload()
    if (c.status == "exited" and c.attrs["RestartCount"] == 1) or time.time() > deadline:
        break
    time.sleep(0.05)
check("restart_policy on-failure:1", c.status == "exited" and c.attrs["RestartCount"] == 1, (c.status, c.attrs["RestartCount"]))
c.remove()
print("OK")
