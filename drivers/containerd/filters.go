package containerd

import (
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/drivers"
)

// storeFilters translates containerd filter strings into the
// drivers.Filters a driver's store applies while it reads, so a Walk for a
// few snapshots of a large tree does not receive them all. It translates
// only what a drivers.Filter says exactly or more broadly: each string a
// conjunction of equalities on kind, name, parent or a label. When any
// string is something else (!=, ~=, a bare field testing presence, a
// field it does not know, or two values for one field) it returns nil,
// and Walk filters everything itself. Either way the caller still applies
// containerd's own filter to what comes back, so a translation may match
// more than containerd would, never less.
//
// containerd's filters package parses into unexported types, so this is a
// small parser of its own for the strict subset it translates: fields are
// [A-Za-z0-9_]+ or Go-quoted with double quotes, values are double-quoted
// or bare runs of [A-Za-z0-9_./:@+-] not starting with '.', no white
// space. Anything outside that is left to containerd's filter.
func storeFilters(ss []string) []drivers.Filter {
	if len(ss) == 0 {
		return nil
	}
	out := make([]drivers.Filter, 0, len(ss))
	for _, s := range ss {
		f, ok := storeFilter(s)
		if !ok {
			return nil
		}
		out = append(out, f)
	}
	return out
}

// storeFilter translates one conjunction, or says it cannot.
func storeFilter(s string) (drivers.Filter, bool) {
	var f drivers.Filter
	if s == "" {
		return f, true // containerd matches everything too
	}
	p := clauseParser{s: s}
	for {
		path, ok := p.fieldpath()
		if !ok || !p.consume("==") {
			return f, false
		}
		value, ok := p.value()
		if !ok || !narrow(&f, path, value) {
			return f, false
		}
		if p.done() {
			return f, true
		}
		if !p.consume(",") {
			return f, false
		}
	}
}

// narrow adds fieldpath==value to f, or says f cannot express it (then
// f is left half-made and must not be used).
func narrow(f *drivers.Filter, path []string, value string) bool {
	switch {
	case len(path) == 1 && path[0] == "kind":
		k, err := drivers.ParseKind(value)
		if err != nil || (f.Kind != drivers.KindUnknown && f.Kind != k) {
			return false
		}
		f.Kind = k
	case len(path) == 1 && path[0] == "name":
		if value == "" || (f.Name != "" && f.Name != value) {
			return false
		}
		f.Name = value
	case len(path) == 1 && path[0] == "parent":
		// parent=="" selects base snapshots; the two cannot both hold.
		if value == "" {
			if f.Parent != "" {
				return false
			}
			f.Base = true
		} else {
			if f.Base || (f.Parent != "" && f.Parent != value) {
				return false
			}
			f.Parent = value
		}
	case len(path) >= 2 && path[0] == "labels":
		key := strings.Join(path[1:], ".") // as adaptor joins it
		if v, ok := f.Labels[key]; ok && v != value {
			return false
		}
		if f.Labels == nil {
			f.Labels = make(map[string]string)
		}
		f.Labels[key] = value
	default:
		return false
	}
	return true
}

// clauseParser reads the subset storeFilter translates.
type clauseParser struct {
	s   string
	pos int
}

func (p *clauseParser) done() bool { return p.pos == len(p.s) }

func (p *clauseParser) consume(tok string) bool {
	if strings.HasPrefix(p.s[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

// fieldpath reads field ('.' field)*.
func (p *clauseParser) fieldpath() ([]string, bool) {
	var path []string
	for {
		f, ok := p.field()
		if !ok {
			return nil, false
		}
		path = append(path, f)
		if !p.consume(".") {
			return path, true
		}
	}
}

func (p *clauseParser) field() (string, bool) {
	if p.pos < len(p.s) && p.s[p.pos] == '"' {
		return p.quoted()
	}
	start := p.pos
	for p.pos < len(p.s) && isFieldByte(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos], p.pos > start
}

func (p *clauseParser) value() (string, bool) {
	if p.pos < len(p.s) && p.s[p.pos] == '"' {
		return p.quoted()
	}
	start := p.pos
	for p.pos < len(p.s) && isValueByte(p.s[p.pos]) {
		p.pos++
	}
	if p.pos == start || p.s[start] == '.' {
		return "", false
	}
	// A bare value runs to a comma or the end in containerd's scanner;
	// one that stops at anything else is not in the subset.
	if p.pos < len(p.s) && p.s[p.pos] != ',' {
		return "", false
	}
	return p.s[start:p.pos], true
}

// quoted reads a double-quoted Go string at p.pos.
func (p *clauseParser) quoted() (string, bool) {
	for end := p.pos + 1; end < len(p.s); end++ {
		switch p.s[end] {
		case '\\':
			end++ // the escaped byte cannot close the string
		case '"':
			v, err := strconv.Unquote(p.s[p.pos : end+1])
			if err != nil {
				return "", false
			}
			p.pos = end + 1
			return v, true
		}
	}
	return "", false
}

func isFieldByte(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isValueByte(c byte) bool {
	return isFieldByte(c) || strings.IndexByte("./:@+-", c) >= 0
}
