"""docker-py (Debian's python3-docker) driving layerlabd's networks:
networks.create with an IPAM pool and labels, containers.run on it with a
static address, networks.list by name and label, network.connect of a
running container (a new interface inside) and disconnect, the 403 of
removing a network in use and the 404 of a missing one, network.remove
and networks.prune. Usage: dockerpy_networks.py SOCKET ARCHIVE. Prints
one line per check and exits non-zero at the first failure."""
from docker import errors
from docker.types import IPAMConfig, IPAMPool
from dockerpy_common import check, connect

client, _ = connect()

ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.66.0.0/24", gateway="10.66.0.1")])
net = client.networks.create("pynet", driver="bridge", ipam=ipam, labels={"from": "py"})
check("networks.create", net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.66.0.0/24" and net.attrs["Labels"] == {"from": "py"}, net.attrs)
check("networks.list by name", [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"])
check("networks.list by label", [n.name for n in client.networks.list(filters={"label": "from=py"})] == ["pynet"])
check("networks.list has the predefined ones", {"bridge", "host", "none"} <= {n.name for n in client.networks.list()})

# docker-py 5's models take no static address: the low-level API does.
created = client.api.create_container(
    "busybox", ["sleep", "1000"], name="pyctr", host_config=client.api.create_host_config(network_mode="pynet"),
    networking_config=client.api.create_networking_config({"pynet": client.api.create_endpoint_config(ipv4_address="10.66.0.50")}))
c = client.containers.get(created["Id"])
c.start()
c.reload()
check("the container's static address", c.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"] == "10.66.0.50", c.attrs["NetworkSettings"])
out = c.exec_run(["ip", "-o", "addr", "show", "eth0"]).output
check("eth0 inside has it", b"10.66.0.50/24" in out, out)

other = client.networks.create("pyother")
other.connect(c)
out = c.exec_run(["ip", "-o", "link"]).output
check("network.connect added eth1", b"eth1" in out, out)
other.reload()
check("network.reload lists the container", c.id in other.attrs["Containers"], other.attrs)
other.disconnect(c)
out = c.exec_run(["ip", "-o", "link"]).output
check("network.disconnect removed eth1", b"eth1" not in out, out)

try:
    net.remove()
    check("removing a network in use is refused", False)
except errors.APIError as e:
    check("removing a network in use is refused with 403", e.status_code == 403, e)
try:
    client.networks.get("nosuchnet")
    check("a missing network is refused", False)
except errors.NotFound:
    check("a missing network is 404", True)

c.remove(force=True)
net.remove()
check("network.remove", "pynet" not in [n.name for n in client.networks.list()])
pruned = client.networks.prune()
check("networks.prune removes the unused one", pruned["NetworksDeleted"] == ["pyother"], pruned)
print("OK")
