package logs

import (
	"fmt"
	"regexp"
	"strings"
)

// Attributes are the extra fields dockerd adds to each json-file line
// ("attrs") and fluentd record: the values of the container's labels and
// environment variables the options name (labels, env: comma-separated
// keys) or match (labels-regex, env-regex); a key absent from the
// container is left out. Nil when none is asked or none matches.
func Attributes(i Info, opts map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range splitKeys(opts["labels"]) {
		if v, ok := i.Labels[k]; ok {
			out[k] = v
		}
	}
	env := map[string]string{}
	for _, kv := range i.Env {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			env[k] = v
		}
	}
	for _, k := range splitKeys(opts["env"]) {
		if v, ok := env[k]; ok {
			out[k] = v
		}
	}
	for _, src := range []struct {
		opt  string
		vals map[string]string
	}{{"labels-regex", i.Labels}, {"env-regex", env}} {
		expr, ok := opts[src.opt]
		if !ok {
			continue
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %v: %w", src.opt, expr, err, ErrOption)
		}
		for k, v := range src.vals {
			if re.MatchString(k) {
				out[k] = v
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func splitKeys(s string) []string {
	var out []string
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}
