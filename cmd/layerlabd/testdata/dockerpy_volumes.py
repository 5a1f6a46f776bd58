"""docker-py (Debian's python3-docker) driving layerlabd's volumes:
volumes.create with labels, containers.run with volumes= (a named volume
and a read-only host bind), volumes.get/list, the 409 of removing a volume
in use and the 404 of a missing one, and volumes.prune. Usage:
dockerpy_volumes.py SOCKET ARCHIVE. Prints one line per check and exits
non-zero at the first failure."""
import os
import shutil
import sys
import tempfile

import docker
from docker import errors
from dockerpy_common import check, connect

client, _ = connect()

v = client.volumes.create("pyvol", labels={"from": "py"})
check("volumes.create", v.name == "pyvol" and v.attrs["Driver"] == "local" and v.attrs["Labels"] == {"from": "py"}, v.attrs)
host = tempfile.mkdtemp()
with open(os.path.join(host, "in"), "w") as f:
    f.write("from the host\n")
out = client.containers.run("busybox", ["sh", "-c", "cat /h/in > /v/copy; touch /h/x 2>/dev/null || echo ro"],
                            volumes={"pyvol": {"bind": "/v", "mode": "rw"}, host: {"bind": "/h", "mode": "ro"}}, remove=True)
check("run with volumes=: the bind is read-only", out == b"ro\n", out)
out = client.containers.run("busybox", ["cat", "/v/copy"], volumes=["pyvol:/v:ro"], remove=True)
check("the named volume kept what the first container wrote", out == b"from the host\n", out)
check("volumes.get", client.volumes.get("pyvol").attrs["Mountpoint"].endswith("/volumes/pyvol/_data"))
check("volumes.list by label", [x.name for x in client.volumes.list(filters={"label": "from=py"})] == ["pyvol"])
c = client.containers.create("busybox", ["true"], volumes=["pyvol:/v"], name="user")
try:
    client.volumes.get("pyvol").remove()
    check("remove of a volume in use is refused", False)
except errors.APIError as e:
    check("remove of a volume in use: 409", e.status_code == 409 and "volume is in use" in str(e), e)
try:
    client.volumes.get("nosuch")
    check("get of a missing volume fails", False)
except errors.NotFound as e:
    check("get of a missing volume: NotFound", "no such volume" in str(e), e)
c.remove()
rep = client.volumes.prune()
check("volumes.prune", rep["VolumesDeleted"] == ["pyvol"] and rep["SpaceReclaimed"] > 0, rep)
shutil.rmtree(host)
print("OK")
