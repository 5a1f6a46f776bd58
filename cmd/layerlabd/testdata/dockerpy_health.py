"""docker-py (Debian's python3-docker) driving layerlabd's health checks:
containers.run(healthcheck=...) in its string and dict forms, the health
read from attrs['State']['Health'] going starting -> healthy ->
unhealthy, containers.list(filters={'health': ...}), and the 400 of a bad
interval. Usage: dockerpy_health.py SOCKET ARCHIVE. Prints one line per
check and exits non-zero at the first failure."""
import time

from docker import errors
from dockerpy_common import check, connect

client, _ = connect()
MS = 1000000  # docker-py takes durations in nanoseconds


def health_of(c):
    c.reload()
    return c.attrs["State"].get("Health")


def wait_health(c, status):
    """Polls inspect for up to a minute until the health is status."""
    deadline = time.time() + 60
    h = health_of(c)
    while (h is None or h["Status"] != status) and time.time() < deadline:
        time.sleep(0.05)
        h = health_of(c)
    return h


# The long start period keeps the failures before the file exists from
# counting: the container stays starting until the script makes it.
c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="pyhealth",
                          healthcheck={"test": ["CMD-SHELL", "test -f /tmp/ok && echo ok"], "interval": 100 * MS,
                                       "retries": 2, "start_period": 300000 * MS})
h = health_of(c)
check("starting", h is not None and h["Status"] == "starting", h)
check("inspect Config.Healthcheck", c.attrs["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /tmp/ok && echo ok"],
      c.attrs["Config"]["Healthcheck"])
check("list health=starting", [x.name for x in client.containers.list(filters={"health": "starting"})] == ["pyhealth"])
c.exec_run(["touch", "/tmp/ok"])
h = wait_health(c, "healthy")
check("healthy", h["Status"] == "healthy" and h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0
      and h["Log"][-1]["Output"] == "ok\n", h)
check("list health=healthy", [x.name for x in client.containers.list(filters={"health": "healthy"})] == ["pyhealth"])
c.exec_run(["rm", "/tmp/ok"])
h = wait_health(c, "unhealthy")
check("unhealthy", h["Status"] == "unhealthy" and h["FailingStreak"] >= 2 and len(h["Log"]) <= 5, h)
c.remove(force=True)

# The string form is a CMD-SHELL test.
c = client.containers.run("busybox", ["sleep", "300"], detach=True, healthcheck={"test": "exit 0", "interval": 50 * MS})
h = wait_health(c, "healthy")
check("string test healthy", h is not None and h["Status"] == "healthy", h)
c.remove(force=True)

try:
    client.containers.run("busybox", ["true"], detach=True, healthcheck={"test": "true", "interval": 10})
    check("interval under 1ms refused", False, "created")
except errors.APIError as e:
    check("interval under 1ms refused", e.status_code == 400 and "Interval in Healthcheck cannot be less than 1ms" in str(e), e)
print("OK")
