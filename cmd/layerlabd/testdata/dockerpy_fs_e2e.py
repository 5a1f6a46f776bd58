"""docker-py (Debian's python3-docker) against layerlabd's filesystem
operations: diff, commit, get_archive/put_archive, export + import, list
filters and prune. Usage: dockerpy_fs_e2e.py SOCKET ARCHIVE. Prints one
line per check and exits non-zero at the first failure."""
import io
import sys
import tarfile

import docker
from docker import errors
from dockerpy_common import check, connect

client, _ = connect()

c = client.containers.run("busybox", ["sh", "-c", "echo x > /f; rm /bin/ls"], detach=True, name="pyc")
check("wait", c.wait()["StatusCode"] == 0)
diff = {d["Path"]: d["Kind"] for d in c.diff()}
check("diff", diff.get("/f") == 1 and diff.get("/bin/ls") == 2 and diff.get("/bin") == 0, diff)

img = c.commit(repository="pyimg", tag="1", message="from py", author="py", changes=['CMD ["cat", "/f"]'])
check("commit", img.id.startswith("sha256:") and "pyimg:1" in img.tags, img.attrs)
out = client.containers.run("pyimg:1", remove=True)
check("run the committed image", out == b"x\n", out)
check("history comment", img.history()[0]["Comment"] == "from py", img.history())

bits, stat = c.get_archive("/f")
data = b"".join(bits)
with tarfile.open(fileobj=io.BytesIO(data)) as tf:
    content = tf.extractfile("f").read()
check("get_archive", stat["name"] == "f" and stat["size"] == 2 and content == b"x\n", (stat, content))

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    info = tarfile.TarInfo("put.txt")
    payload = b"put by docker-py\n"
    info.size = len(payload)
    tf.addfile(info, io.BytesIO(payload))
check("put_archive", c.put_archive("/tmp", buf.getvalue()) is True)
bits, stat = c.get_archive("/tmp/put.txt")
check("put_archive then get_archive", stat["size"] == len(payload), stat)
try:
    c.get_archive("/nosuch")
    check("get_archive of a missing path raises NotFound", False, "no exception")
except errors.NotFound:
    check("get_archive of a missing path raises NotFound", True)

exported = b"".join(c.export())
with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
    names = tf.getnames()
check("export", "f" in names and "tmp/put.txt" in names and "bin/ls" not in names, len(names))
client.api.import_image_from_data(exported, repository="pyimp", tag="1", changes=['CMD ["cat", "/tmp/put.txt"]'])
out = client.containers.run("pyimp:1", remove=True)
check("import then run", out == b"put by docker-py\n", out)

exited = [x.name for x in client.containers.list(all=True, filters={"status": "exited"})]
check("list status=exited", exited == ["pyc"], exited)
check("list name=pyc (running only)", client.containers.list(filters={"name": "pyc"}) == [])
rep = client.containers.prune()
check("containers.prune", rep["ContainersDeleted"] == [c.id], rep)
rep = client.images.prune(filters={"dangling": False})
deleted = [d.get("Untagged") for d in rep["ImagesDeleted"] if d.get("Untagged")]
check("images.prune dangling=false", {"busybox:latest", "pyimg:1", "pyimp:1"} <= set(deleted), rep)
check("no image left", client.images.list() == [], client.images.list())
print("OK")
