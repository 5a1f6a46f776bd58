package logs

import (
	"fmt"
	"strings"
	"text/template"
)

// defaultTag is dockerd's tag template: the container's short ID.
const defaultTag = "{{.ID}}"

// tagInfo is what a tag template sees: dockerd's names.
type tagInfo struct{ i Info }

// ID is the container's ID cut to 12 characters.
func (t tagInfo) ID() string { return short(t.i.ContainerID) }

// FullID is the container's whole ID.
func (t tagInfo) FullID() string { return t.i.ContainerID }

// Name is the container's name.
func (t tagInfo) Name() string { return strings.TrimPrefix(t.i.ContainerName, "/") }

// ImageName is the image as the container was created from it.
func (t tagInfo) ImageName() string { return t.i.ImageName }

// ImageID is the image's ID without its algorithm, cut to 12 characters.
func (t tagInfo) ImageID() string { return short(t.i.ImageID) }

// ImageFullID is the image's whole ID.
func (t tagInfo) ImageFullID() string { return t.i.ImageID }

// DaemonName is the daemon's name.
func (t tagInfo) DaemonName() string { return t.i.DaemonName }

func short(id string) string {
	if _, hex, ok := strings.Cut(id, ":"); ok {
		id = hex
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// Tag renders the tag template tmpl (dockerd's --log-opt tag; "" for the
// default {{.ID}}) for the container i.
func Tag(tmpl string, i Info) (string, error) {
	if tmpl == "" {
		tmpl = defaultTag
	}
	t, err := template.New("tag").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("tag=%q: %v: %w", tmpl, err, ErrOption)
	}
	var b strings.Builder
	if err := t.Execute(&b, tagInfo{i}); err != nil {
		return "", fmt.Errorf("tag=%q: %v (fields: {{.ID}} {{.FullID}} {{.Name}} {{.ImageName}} {{.ImageID}} {{.ImageFullID}} {{.DaemonName}}): %w", tmpl, err, ErrOption)
	}
	return b.String(), nil
}
