"""docker-py against layerlabd and two registries the Go test started:
images.push (streamed, with its aux digest), images.pull by tag and by
digest, the NotFound of an unknown image, and client.login (a refused
password, then a good one used for a push and a pull).
Arguments: socket, plain registry, auth registry, user, password."""
import sys

import docker

from dockerpy_common import check

sock, reg, areg, user, password = sys.argv[1:6]
client = docker.DockerClient(base_url="unix://" + sock, version="1.41", timeout=120)

img = client.images.pull(reg + "/bb", tag="latest")
check("pull by tag", (reg + "/bb:latest") in img.tags, img.tags)
check("tag for the registry", img.tag(reg + "/py", "1"))
lines = list(client.images.push(reg + "/py", tag="1", stream=True, decode=True))
errors = [l for l in lines if "error" in l]
check("push streams no error", not errors, errors)
digests = [l["aux"]["Digest"] for l in lines if "aux" in l]
check("push ends with an aux digest", len(digests) == 1 and digests[0].startswith("sha256:"), lines)
check("push reports progress per layer", any(l.get("status", "").startswith(("Pushed", "Layer already exists", "Mounted from")) for l in lines), lines)

client.images.remove(reg + "/py:1")
pulled = client.images.pull(reg + "/py", tag="1")
check("pull by tag gives the same image", pulled.id == img.id, pulled.id)
by_digest = client.images.pull(reg + "/py", tag=digests[0])
check("pull by digest", by_digest.id == img.id and (reg + "/py@" + digests[0]) in by_digest.attrs["RepoDigests"], by_digest.attrs)

try:
    client.images.pull(reg + "/nosuch", tag="latest")
    check("unknown image refused", False)
except docker.errors.NotFound as e:
    check("unknown image is NotFound", "not found" in str(e), e)

try:
    client.login(user, "wrong", registry=areg, reauth=True)
    check("bad password refused", False)
except docker.errors.APIError as e:
    check("bad password refused with 401", e.status_code == 401 and "unauthorized" in str(e), e)

r = client.login(user, password, registry=areg, reauth=True)
check("login", r.get("Status") == "Login Succeeded", r)
auth = {"username": user, "password": password}
img.tag(areg + "/py", "1")
lines = list(client.images.push(areg + "/py", tag="1", stream=True, decode=True, auth_config=auth))
check("push with auth", not [l for l in lines if "error" in l] and any("aux" in l for l in lines), lines)
client.images.remove(areg + "/py:1")
got = client.images.pull(areg + "/py", tag="1", auth_config=auth)
check("pull with auth", got.id == img.id, got.id)
print("OK")
