"""What every docker-py end-to-end script starts with: a client of the
layerlabd at argv[1] (API 1.41, as docker-py 5 defaults to), the busybox
archive at argv[2] loaded into it, and check(), which prints one line per
check and exits non-zero at the first failure."""
import sys

import docker


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else ": " + str(detail)))
    if not ok:
        sys.exit(1)


def connect():
    """Returns the client and what images.load gave for the archive."""
    sock, archive = sys.argv[1], sys.argv[2]
    client = docker.DockerClient(base_url="unix://" + sock, version="1.41", timeout=60)
    with open(archive, "rb") as f:
        loaded = client.images.load(f.read())
    return client, loaded
