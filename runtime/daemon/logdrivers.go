package daemon

import (
	"fmt"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/logs"
)

// daemonName is what a log tag's {{.DaemonName}} says.
const daemonName = "layerlabd"

// checkLogDefaults checks --log-driver and --log-opt at start-up, as
// dockerd refuses to start with a bad default; no driver is json-file.
func checkLogDefaults(cfg *Config) error {
	if cfg.LogDriver == "" {
		cfg.LogDriver = logs.JSONFileDriver
	}
	if err := logs.Validate(cfg.LogDriver, cfg.LogOpts); err != nil {
		return fmt.Errorf("--log-driver %s --log-opt: %w", cfg.LogDriver, err)
	}
	return nil
}

// mergeLogConfig fills a new container's log configuration as dockerd
// does: no driver is the daemon's, whose --log-opt values fill the keys
// the container did not set; then it is validated.
func (d *Daemon) mergeLogConfig(lc *container.LogConfig) error {
	if lc.Type == "" {
		lc.Type = d.cfg.LogDriver
	}
	if lc.Config == nil {
		lc.Config = map[string]string{}
	}
	if lc.Type == d.cfg.LogDriver {
		for k, v := range d.cfg.LogOpts {
			if _, ok := lc.Config[k]; !ok {
				lc.Config[k] = v
			}
		}
	}
	return logs.Validate(lc.Type, lc.Config)
}

// logInfo names the container to its log driver.
func (d *Daemon) logInfo(r containers.Record) logs.Info {
	return logs.Info{ContainerID: r.ID, ContainerName: r.Name, ImageName: r.Image, ImageID: r.ImageID.String(),
		DaemonName: daemonName, Dir: d.containerDir(r.ID), Labels: r.Config.Labels, Env: r.Config.Env}
}

// logDriver is the container's driver; records from before drivers were
// chosen have none and are json-file.
func logDriver(r containers.Record) string {
	if t := r.HostConfig.LogConfig.Type; t != "" {
		return t
	}
	return logs.JSONFileDriver
}

// openLog opens the container's log driver for a run.
func (d *Daemon) openLog(r containers.Record) (*logs.Writer, error) {
	l, err := logs.New(d.logInfo(r), logDriver(r), r.HostConfig.LogConfig.Config)
	if err != nil {
		return nil, err
	}
	return logs.NewWriter(l), nil
}

// logSource is where `docker logs` reads the container's output.
func (d *Daemon) logSource(r containers.Record) (logs.Source, error) {
	return logs.NewSource(d.logInfo(r), logDriver(r), r.HostConfig.LogConfig.Config)
}

// inspectLogPath is inspect's LogPath: the json-file's, as dockerd shows
// only that one.
func (d *Daemon) inspectLogPath(r containers.Record) string {
	if logDriver(r) != logs.JSONFileDriver {
		return ""
	}
	return logs.JSONPath(d.logInfo(r))
}
