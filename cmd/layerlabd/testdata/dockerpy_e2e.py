"""docker-py (Debian's python3-docker) against layerlabd, as a user's
script would drive dockerd. Usage: dockerpy_e2e.py SOCKET ARCHIVE.
Prints one line per check and exits non-zero at the first failure."""
import sys
import time

import docker
from docker import errors
from dockerpy_common import check, connect

client, loaded = connect()
check("ping", client.ping() is True)
check("version", client.version()["ApiVersion"] == "1.41", client.version())
tags = sorted(t for img in loaded for t in img.tags)
check("images.load", "busybox:latest" in tags, tags)
img = client.images.get("busybox")
check("images.get", img.id.startswith("sha256:") and "busybox:latest" in img.tags, img.attrs)

out = client.containers.run("busybox", ["echo", "hello from docker-py"], remove=True)
check("containers.run remove=True", out == b"hello from docker-py\n", out)
check("no container left by remove=True", client.containers.list(all=True) == [], client.containers.list(all=True))

try:
    client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    check("a failing command raises ContainerError", False, "no exception")
except errors.ContainerError as e:
    check("a failing command raises ContainerError", e.exit_status == 3, e)

c = client.containers.run("busybox", ["sh", "-c", "echo up; exec sleep 300"], detach=True, name="py")
c.reload()
check("detached container runs", c.status == "running", c.status)
check("containers.list", [x.name for x in client.containers.list()] == ["py"], client.containers.list())
# Running is not yet "echo up" done: wait for the line (bounded).
deadline = time.monotonic() + 10
while b"up\n" not in c.logs() and time.monotonic() < deadline:
    time.sleep(0.05)
check("logs", b"up\n" in c.logs(), c.logs())
driver = c.attrs["GraphDriver"]["Name"]
check("GraphDriver", driver == "overlay2", driver)
c.stop(timeout=1)
code = c.wait()["StatusCode"]
check("stop then wait", code == 137, code)
c.remove()
try:
    client.containers.get("py")
    check("removed container is gone", False, "still there")
except errors.NotFound:
    check("removed container is gone", True)

try:
    client.images.get("nosuch:latest")
    check("unknown image raises ImageNotFound", False, "found")
except errors.ImageNotFound:
    check("unknown image raises ImageNotFound", True)

v = client.containers.run("busybox", ["cat", "/proc/mounts"], remove=True,
                          storage_opt={"driver": "vfs"})
root = [l for l in v.decode().splitlines() if l.split()[1] == "/"]
check("storage_opt driver=vfs", len(root) == 1 and not root[0].startswith("overlay"), root)
print("OK")
