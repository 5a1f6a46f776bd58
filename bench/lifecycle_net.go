package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// bridgeNetwork is the user bridge the bench's layerlabd (run with
// --bridge none) gets for bridgeRuns.
const bridgeNetwork = "llbench"

// bridgeRuns times container lives on a bridge network against lives with
// no network, alternating the two so both see the same machine: what
// networking adds to a start (a network namespace, a veth pair into the
// bridge, an address, the /etc files; made at create, as the endpoint's
// address is) is api-create-bridge + api-start-bridge minus the same
// for nonet, and its teardown is in api-delete-bridge. The daemon runs
// in the bench's own network namespace.
func bridgeRuns(ctx context.Context, r *run, t *target, c *apiClient) (err error) {
	var created struct {
		ID string `json:"Id"`
	}
	if err := c.do(ctx, http.MethodPost, "/networks/create", map[string]any{"Name": bridgeNetwork, "Driver": "bridge"}, &created); err != nil {
		return fmt.Errorf("create the bench's bridge network: %w", err)
	}
	defer func() {
		err = errors.Join(err, c.do(context.WithoutCancel(ctx), http.MethodDelete, "/networks/"+bridgeNetwork, nil, nil))
	}()
	p := func(op string) point { return point{Workload: "lifecycle", Op: op, Target: t.info.ID, Unit: "ns"} }
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		rec := r.recorderFor(i)
		for _, run := range []struct{ network, suffix string }{{"none", "nonet"}, {bridgeNetwork, "bridge"}} {
			var parts [4]time.Duration
			if err := rec.time(p("api-run-"+run.suffix), func() (err error) {
				parts, err = apiOnceOn(ctx, c, run.network)
				return err
			}); err != nil {
				return fmt.Errorf("api-run on network %s: %w", run.network, err)
			}
			for j, part := range []string{"api-create-", "api-start-", "api-wait-", "api-delete-"} {
				rec.add(p(part+run.suffix), float64(parts[j]))
			}
		}
	}
	return nil
}
