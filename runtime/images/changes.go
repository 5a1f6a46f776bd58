package images

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/drivers"
)

// ApplyChanges applies the Dockerfile-like instructions of `docker commit
// -c` and `docker import -c` to cfg: CMD, ENTRYPOINT, ENV, WORKDIR, USER,
// EXPOSE, LABEL, VOLUME, STOPSIGNAL and HEALTHCHECK, in JSON-array or
// shell form where Dockerfile has both. Each change may hold several lines; blank lines and
// # comments are skipped. Any other instruction, or a malformed one, is
// refused with drivers.ErrInvalidArgument and cfg is left as it was.
func ApplyChanges(cfg *dockerspec.DockerOCIImageConfig, changes []string) error {
	out := cloneConfig(*cfg)
	for _, ch := range changes {
		for _, line := range strings.Split(ch, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := applyChange(&out, line); err != nil {
				return fmt.Errorf("change %q: %w: %w", line, err, drivers.ErrInvalidArgument)
			}
		}
	}
	*cfg = out
	return nil
}

// cloneConfig copies the maps and slices of c, so a refused change leaves
// the caller's config untouched.
func cloneConfig(c dockerspec.DockerOCIImageConfig) dockerspec.DockerOCIImageConfig {
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = append([]string(nil), h.Test...)
		c.Healthcheck = &h
	}
	c.Env = append([]string(nil), c.Env...)
	c.Cmd = append([]string(nil), c.Cmd...)
	c.Entrypoint = append([]string(nil), c.Entrypoint...)
	c.ExposedPorts = cloneSet(c.ExposedPorts)
	c.Volumes = cloneSet(c.Volumes)
	if c.Labels != nil {
		l := make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			l[k] = v
		}
		c.Labels = l
	}
	return c
}

func cloneSet(s map[string]struct{}) map[string]struct{} {
	if s == nil {
		return nil
	}
	out := make(map[string]struct{}, len(s))
	for k := range s {
		out[k] = struct{}{}
	}
	return out
}

func applyChange(c *dockerspec.DockerOCIImageConfig, line string) error {
	instr, rest := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		instr, rest = line[:i], line[i+1:]
	}
	rest = strings.TrimSpace(rest)
	switch strings.ToUpper(instr) {
	case "CMD":
		c.Cmd = commandForm(rest)
	case "ENTRYPOINT":
		c.Entrypoint = commandForm(rest)
	case "ENV":
		pairs, err := keyValues(rest, true)
		if err != nil {
			return err
		}
		for _, kv := range pairs {
			c.Env = setEnv(c.Env, kv[0]+"="+kv[1])
		}
	case "LABEL":
		pairs, err := keyValues(rest, false)
		if err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range pairs {
			c.Labels[kv[0]] = kv[1]
		}
	case "WORKDIR":
		if rest == "" {
			return fmt.Errorf("WORKDIR needs a path")
		}
		dir := rest
		if !path.IsAbs(dir) {
			dir = path.Join("/", c.WorkingDir, dir)
		}
		c.WorkingDir = path.Clean(dir)
	case "USER":
		if rest == "" || strings.ContainsAny(rest, " \t") {
			return fmt.Errorf("USER needs one user[:group]")
		}
		c.User = rest
	case "EXPOSE":
		words, err := splitWords(rest)
		if err != nil {
			return err
		}
		if len(words) == 0 {
			return fmt.Errorf("EXPOSE needs a port")
		}
		for _, w := range words {
			p, err := portSpec(w)
			if err != nil {
				return err
			}
			if c.ExposedPorts == nil {
				c.ExposedPorts = map[string]struct{}{}
			}
			c.ExposedPorts[p] = struct{}{}
		}
	case "VOLUME":
		vols, ok := jsonArray(rest)
		if !ok {
			var err error
			if vols, err = splitWords(rest); err != nil {
				return err
			}
		}
		if len(vols) == 0 {
			return fmt.Errorf("VOLUME needs a path")
		}
		for _, v := range vols {
			if strings.TrimSpace(v) == "" {
				return fmt.Errorf("VOLUME path is empty")
			}
			if c.Volumes == nil {
				c.Volumes = map[string]struct{}{}
			}
			c.Volumes[v] = struct{}{}
		}
	case "STOPSIGNAL":
		if rest == "" || strings.ContainsAny(rest, " \t") {
			return fmt.Errorf("STOPSIGNAL needs one signal")
		}
		c.StopSignal = rest
	case "HEALTHCHECK":
		h, err := parseHealthcheck(rest)
		if err != nil {
			return err
		}
		c.Healthcheck = h
	default:
		return fmt.Errorf("%s is not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)", instr)
	}
	return nil
}

// commandForm is the exec form of a JSON array, else the shell form
// wrapped in /bin/sh -c, as a Dockerfile reads CMD and ENTRYPOINT.
func commandForm(s string) []string {
	if args, ok := jsonArray(s); ok {
		return args
	}
	if s == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", s}
}

// jsonArray reads s as a JSON array of strings.
func jsonArray(s string) ([]string, bool) {
	if !strings.HasPrefix(s, "[") {
		return nil, false
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, false
	}
	if out == nil {
		out = []string{}
	}
	return out, true
}

// keyValues reads `k=v k2="v 2"`, or (legacy, when legacy allows it and
// the first word has no '=') `k the rest is the value`.
func keyValues(s string, legacy bool) ([][2]string, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("needs key=value")
	}
	if !strings.Contains(words[0], "=") {
		if !legacy || len(words) < 2 {
			return nil, fmt.Errorf("%q has no '=': use key=value", words[0])
		}
		_, val, _ := strings.Cut(strings.TrimSpace(s), " ")
		return [][2]string{{words[0], strings.TrimSpace(val)}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// splitWords splits s at unquoted blanks; "..." may hold \" and \\,
// '...' holds everything literally, and \ outside quotes escapes the next
// character.
func splitWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == ' ' || ch == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		case ch == '"' || ch == '\'':
			inWord = true
			end := -1
			for j := i + 1; j < len(s); j++ {
				if ch == '"' && s[j] == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
					cur.WriteByte(s[j+1])
					j++
					continue
				}
				if s[j] == ch {
					end = j
					break
				}
				cur.WriteByte(s[j])
			}
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c quote", ch)
			}
			i = end
		default:
			inWord = true
			cur.WriteByte(ch)
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// setEnv sets kv in env, replacing the variable of the same name.
func setEnv(env []string, kv string) []string {
	k, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// portSpec normalizes an EXPOSE word: PORT[/PROTO], tcp by default.
func portSpec(w string) (string, error) {
	port, proto, ok := strings.Cut(w, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return "", fmt.Errorf("EXPOSE %q: protocol must be tcp, udp or sctp", w)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("EXPOSE %q: port must be 1-65535", w)
	}
	return strconv.Itoa(n) + "/" + proto, nil
}

// parseHealthcheck reads HEALTHCHECK's arguments as a Dockerfile gives
// them: NONE, or [--interval=D] [--timeout=D] [--start-period=D]
// [--start-interval=D] [--retries=N] CMD and the command, in exec form
// (a JSON array: the test is CMD and its words) or shell form
// (CMD-SHELL). A duration of 0 means the default; others under 1ms are
// refused, as the builder refuses them.
func parseHealthcheck(rest string) (*dockerspec.HealthcheckConfig, error) {
	h := &dockerspec.HealthcheckConfig{}
	for strings.HasPrefix(rest, "--") {
		word, after := cutBlank(rest)
		rest = after
		name, value, ok := strings.Cut(word[2:], "=")
		if !ok {
			return nil, fmt.Errorf("HEALTHCHECK flag %q: write --%s=VALUE", word, name)
		}
		if name == "retries" {
			n, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("HEALTHCHECK --retries=%q: want a whole number", value)
			}
			if n < 0 {
				return nil, fmt.Errorf("--retries cannot be negative (%d)", n)
			}
			h.Retries = n
			continue
		}
		var dst *time.Duration
		switch name {
		case "interval":
			dst = &h.Interval
		case "timeout":
			dst = &h.Timeout
		case "start-period":
			dst = &h.StartPeriod
		case "start-interval":
			dst = &h.StartInterval
		default:
			return nil, fmt.Errorf("HEALTHCHECK: unknown flag --%s (--interval, --timeout, --start-period, --start-interval, --retries)", name)
		}
		d, err := time.ParseDuration(value)
		if err != nil {
			return nil, fmt.Errorf("HEALTHCHECK --%s=%q: want a duration such as 30s or 1m30s", name, value)
		}
		if d != 0 && d < time.Millisecond {
			return nil, fmt.Errorf("Interval %q cannot be less than 1ms", name)
		}
		*dst = d
	}
	typ, cmd := cutBlank(rest)
	switch strings.ToUpper(typ) {
	case "NONE":
		if cmd != "" || h.Interval != 0 || h.Timeout != 0 || h.StartPeriod != 0 || h.StartInterval != 0 || h.Retries != 0 {
			return nil, fmt.Errorf("HEALTHCHECK NONE takes no arguments")
		}
		return &dockerspec.HealthcheckConfig{Test: []string{"NONE"}}, nil
	case "CMD":
		if args, ok := jsonArray(cmd); ok {
			if len(args) == 0 {
				return nil, fmt.Errorf("Missing command after HEALTHCHECK CMD")
			}
			h.Test = append([]string{"CMD"}, args...)
			return h, nil
		}
		if cmd == "" {
			return nil, fmt.Errorf("Missing command after HEALTHCHECK CMD")
		}
		h.Test = []string{"CMD-SHELL", cmd}
		return h, nil
	}
	return nil, fmt.Errorf("Unknown type %q in HEALTHCHECK (try CMD or NONE)", typ)
}

// cutBlank splits s at its first blank (space or tab) into the word
// before and the trimmed rest.
func cutBlank(s string) (string, string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i+1:])
}
