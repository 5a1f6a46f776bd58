"""docker-py's images.build against layerlabd: a two-stage build with
buildargs, labels and a .dockerignore, the cache on a rebuild, nocache,
target, the per-build storage driver, a failing step's BuildError, and
the image run."""
import io
import os
import sys
import tarfile
import tempfile

import docker

from dockerpy_common import check, connect

client, _ = connect()
ctx = tempfile.mkdtemp()
files = {
    "Dockerfile": "FROM busybox AS base\nARG WHO=nobody\nCOPY hello.txt /hello.txt\n"
                  "RUN echo \"built by $WHO\" > /who.txt\n"
                  "FROM base AS final\nENV MODE=py\nCMD [\"cat\", \"/who.txt\", \"/hello.txt\"]\n",
    "hello.txt": "hello from the context\n",
    "ignored.txt": "not sent\n",
    ".dockerignore": "ignored.txt\n",
}
for name, content in files.items():
    with open(os.path.join(ctx, name), "w") as f:
        f.write(content)


def build(**kw):
    image, logs = client.images.build(path=ctx, **kw)
    text = "".join(l.get("stream", "") for l in logs)
    return image, text


image, text = build(tag="py:1", buildargs={"WHO": "docker-py"}, labels={"via": "docker-py"}, rm=True)
check("build streams the steps", "Step 1/" in text and "Successfully built" in text, text)
check("build labels the image", image.labels.get("via") == "docker-py", image.labels)
check("build tags the image", "py:1" in image.tags, image.tags)
out = client.containers.run("py:1", remove=True).decode()
check("the built image runs", out == "built by docker-py\nhello from the context\n", out)

again, text = build(tag="py:1", buildargs={"WHO": "docker-py"}, labels={"via": "docker-py"})
check("rebuild hits the cache", again.id == image.id and text.count("Using cache") >= 5, text)
fresh, text = build(tag="py:2", buildargs={"WHO": "docker-py"}, nocache=True)
check("nocache rebuilds", fresh.id != image.id and "Using cache" not in text, text)
base, text = build(tag="py:base", target="base")
out = client.containers.run("py:base", ["cat", "/who.txt"], remove=True).decode()
check("target stops at base, the ARG default used", out == "built by nobody\n" and "final" not in text, out + text)
out = client.containers.run("py:1", ["ls", "/"], remove=True).decode()
check(".dockerignore keeps ignored.txt out", "ignored.txt" not in out, out)

# The per-build storage driver: the build's kept containers ran on vfs.
before = {c.id for c in client.containers.list(all=True)}  # docker-py's rm defaults to False
vfs, text = build(tag="py:vfs", buildargs={"WHO": "vfs", "LAYERLAB_STORAGE_DRIVER": "vfs"}, nocache=True, rm=False)
kept = [c for c in client.containers.list(all=True) if c.id not in before]
check("LAYERLAB_STORAGE_DRIVER=vfs runs the build on vfs",
      kept and all(c.attrs["GraphDriver"]["Name"] == "vfs" for c in kept) and "not consumed" not in text,
      [c.attrs["GraphDriver"]["Name"] for c in kept])
for c in kept:
    c.remove()
out = client.containers.run("py:vfs", remove=True).decode()
check("the vfs-built image runs", out.startswith("built by vfs"), out)

with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write("FROM busybox\nRUN echo failing; exit 7\n")
try:
    build(tag="py:fail")
    check("a failing RUN raises BuildError", False)
except docker.errors.BuildError as e:
    check("a failing RUN raises BuildError", "returned a non-zero code: 7" in str(e), e)
print("OK")
