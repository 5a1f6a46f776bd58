package network

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-connections/nat"

	"github.com/layerlab/layerlab/drivers"
)

// linkName is Docker's container name rule, which link aliases follow.
var linkName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ParseLink reads a --link value as a raw API request may send it:
// "NAME", "NAME:ALIAS" or the stored "/NAME:/CONTAINER/ALIAS". The alias
// defaults to the name.
func ParseLink(s string) (name, alias string, err error) {
	name, alias, ok := strings.Cut(s, ":")
	if !ok {
		alias = name
	}
	name = strings.TrimPrefix(name, "/")
	if i := strings.LastIndex(alias, "/"); i >= 0 {
		alias = alias[i+1:]
	}
	if !linkName.MatchString(name) || !linkName.MatchString(alias) {
		return "", "", fmt.Errorf("invalid link %q: want NAME or NAME:ALIAS with [a-zA-Z0-9][a-zA-Z0-9_.-] names: %w", s, drivers.ErrInvalidArgument)
	}
	return name, alias, nil
}

// Linked is the container a --link points at, as its environment shows.
type Linked struct {
	Name    string // without the slash
	IP      netip.Addr
	Exposed nat.PortSet
	Env     []string
}

// LinkEnv is what Docker's legacy links put in the environment of the
// container named self for the link alias to target: ALIAS_NAME, each
// exposed port's ALIAS_PORT_N_PROTO{,_ADDR,_PORT,_PROTO}, ALIAS_PORT for
// the lowest, and the target's environment as ALIAS_ENV_KEY (but HOME
// and PATH).
func LinkEnv(self, alias string, target Linked) []string {
	p := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(alias))
	env := []string{p + "_NAME=/" + self + "/" + alias}
	type port struct {
		n     int
		proto string
	}
	var ports []port
	for k := range target.Exposed {
		if proto, n, err := parseCtrPort(string(k)); err == nil {
			ports = append(ports, port{n, proto})
		}
	}
	slices.SortFunc(ports, func(a, b port) int {
		if a.n != b.n {
			return a.n - b.n
		}
		return strings.Compare(a.proto, b.proto)
	})
	for i, pt := range ports {
		url := fmt.Sprintf("%s://%s:%d", pt.proto, target.IP, pt.n)
		if i == 0 {
			env = append(env, p+"_PORT="+url)
		}
		key := fmt.Sprintf("%s_PORT_%d_%s", p, pt.n, strings.ToUpper(pt.proto))
		env = append(env, key+"="+url, key+"_ADDR="+target.IP.String(), key+"_PORT="+strconv.Itoa(pt.n), key+"_PROTO="+pt.proto)
	}
	for _, kv := range target.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "HOME" || k == "PATH" {
			continue
		}
		env = append(env, p+"_ENV_"+k+"="+v)
	}
	return env
}
