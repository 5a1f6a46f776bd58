package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	eventtypes "github.com/docker/docker/api/types/events"
	regtypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/images"
	"github.com/layerlab/layerlab/runtime/registry"
)

// pullRef is the reference POST /images/create names: fromImage with its
// tag, or with its digest when the tag is one (the CLI sends a digest
// there); fromImage alone means its :latest.
func pullRef(image, tag string) string {
	switch {
	case tag == "":
		return image
	case strings.Contains(tag, ":"): // sha256:...
		return image + "@" + tag
	}
	return image + ":" + tag
}

// PullImage answers POST /images/create?fromImage=: it resolves the
// reference on its registry (nothing is written to emit before that
// succeeds, so a missing image or a refusal gets its own status), then
// streams dockerd's progress while the layers come in. fromImage without
// a tag or digest is every tag of the repository (docker pull -a).
func (d *Daemon) PullImage(ctx context.Context, image, tag, platform string, ac regtypes.AuthConfig, emit func(api.Message)) error {
	pl, err := registry.ParsePlatform(platform)
	if err != nil {
		return err
	}
	if tag != "" || strings.ContainsAny(image, "@") {
		_, err := d.pullOne(ctx, pullRef(image, tag), true, pl, ac, emit)
		return err
	}
	tags, err := d.reg.Tags(ctx, image, ac)
	if err != nil {
		return err
	}
	fresh := false
	for _, t := range tags {
		f, err := d.pullOne(ctx, image+":"+t, false, pl, ac, emit)
		if err != nil {
			return err
		}
		fresh = fresh || f
	}
	repo, err := name.NewRepository(image)
	if err != nil {
		return fmt.Errorf("invalid reference format %q: %w: %w", image, drivers.ErrInvalidArgument, err)
	}
	if fresh {
		emit(api.Message{Status: "Status: Downloaded newer image for " + images.FamiliarRepo(repo)})
	} else {
		emit(api.Message{Status: "Status: Image is up to date for " + images.FamiliarRepo(repo)})
	}
	return nil
}

// pullOne pulls one reference; alone (not part of -a) it ends with its
// own status line. It says whether the name now means another image.
func (d *Daemon) pullOne(ctx context.Context, ref string, single bool, pl v1.Platform, ac regtypes.AuthConfig, emit func(api.Message)) (bool, error) {
	f, err := d.reg.Fetch(ctx, ref, pl, ac)
	if err != nil {
		return false, err
	}
	repo := images.FamiliarRepo(f.Ref.Context())
	emit(api.Message{ID: f.Ref.Identifier(), Status: "Pulling from " + f.Ref.Context().RepositoryStr()})
	var refs []string
	shown := repo + "@" + f.Digest.String()
	if t, ok := f.Ref.(name.Tag); ok {
		shown = repo + ":" + t.TagStr()
		refs = append(refs, shown)
	}
	refs = append(refs, repo+"@"+f.Digest.String())
	blobs := make([]images.Blob, len(f.Blobs))
	for i, b := range f.Blobs {
		blobs[i] = images.Blob(b)
	}
	pulled, err := d.images.Pull(ctx, f.Image, refs, blobs, progressTo(emit))
	if err != nil {
		return false, err
	}
	emit(api.Message{Status: "Digest: " + f.Digest.String()})
	if single {
		if pulled.Fresh {
			emit(api.Message{Status: "Status: Downloaded newer image for " + shown})
		} else {
			emit(api.Message{Status: "Status: Image is up to date for " + shown})
		}
	}
	d.imageEvent(eventtypes.ActionPull, pulled.ID.String(), shown)
	return pulled.Fresh, nil
}

// progressTo turns a layer's step into a JSON message.
func progressTo(emit func(api.Message)) func(id, status string, current, total int64) {
	return func(id, status string, current, total int64) {
		emit(api.Message{ID: id, Status: status, Progress: &api.ProgressDetail{Current: current, Total: total}})
	}
}

// PushImage answers POST /images/{name}/push?tag=: the image tagged
// name:tag (every tag of name when tag is empty) goes to name's registry.
func (d *Daemon) PushImage(ctx context.Context, image, tag string, ac regtypes.AuthConfig, emit func(api.Message)) error {
	repo, err := name.NewRepository(image)
	if err != nil {
		return fmt.Errorf("invalid reference format %q: %w: %w", image, drivers.ErrInvalidArgument, err)
	}
	familiar := images.FamiliarRepo(repo)
	var tags []string
	if tag != "" {
		tags = []string{familiar + ":" + tag}
	} else {
		all, err := d.images.RefsOf(familiar)
		if err != nil {
			return fmt.Errorf("An image does not exist locally with the tag: %s: %w", familiar, err)
		}
		for t := range all {
			tags = append(tags, t)
		}
	}
	type source struct {
		ref    string
		id     digest.Digest
		config []byte
		layers []images.PushLayer
	}
	var srcs []source
	for _, t := range tags {
		id, config, layers, err := d.images.PushSource(t)
		if err != nil {
			return fmt.Errorf("An image does not exist locally with the tag: %s: %w", t, err)
		}
		srcs = append(srcs, source{t, id, config, layers})
	}
	emit(api.Message{Status: "The push refers to repository [" + repo.Name() + "]"})
	for _, s := range srcs {
		layers := make([]registry.PushLayer, len(s.layers))
		diffIDs := make([]digest.Digest, len(s.layers))
		for i, l := range s.layers {
			layers[i] = registry.PushLayer{DiffID: l.DiffID.String(), Path: l.Path}
			for _, k := range l.Known {
				layers[i].Known = append(layers[i].Known, registry.Blob(k))
			}
			diffIDs[i] = l.DiffID
		}
		full := repo.Name() + s.ref[len(familiar):]
		pushed, err := d.reg.Push(ctx, full, s.config, layers, ac, progressTo(emit))
		if err != nil {
			return err
		}
		blobs := make([]images.Blob, len(pushed.Blobs))
		for i, b := range pushed.Blobs {
			blobs[i] = images.Blob(b)
		}
		if err := d.images.AddBlobs(diffIDs, blobs); err != nil {
			return err
		}
		if err := d.images.AddRef(s.id, familiar+"@"+pushed.Digest.String()); err != nil {
			return err
		}
		t := s.ref[len(familiar)+1:]
		emit(api.Message{Status: fmt.Sprintf("%s: digest: %s size: %d", t, pushed.Digest, pushed.Size)})
		aux, _ := json.Marshal(map[string]any{"Tag": t, "Digest": pushed.Digest.String(), "Size": pushed.Size})
		raw := json.RawMessage(aux)
		emit(api.Message{Progress: &api.ProgressDetail{}, Aux: &raw})
		d.imageEvent(eventtypes.ActionPush, s.id.String(), s.ref)
	}
	return nil
}

// Login answers POST /auth: the credentials are checked against the
// registry; nothing is stored (the client keeps them).
func (d *Daemon) Login(ctx context.Context, ac regtypes.AuthConfig) (regtypes.AuthenticateOKBody, error) {
	if err := d.reg.Login(ctx, ac); err != nil {
		return regtypes.AuthenticateOKBody{}, err
	}
	return regtypes.AuthenticateOKBody{Status: "Login Succeeded"}, nil
}

// registryConfig is /info's RegistryConfig: loopback and the insecure
// CIDRs, and the registries listed by name.
func (d *Daemon) registryConfig() *regtypes.ServiceConfig {
	c := &regtypes.ServiceConfig{IndexConfigs: map[string]*regtypes.IndexInfo{
		"docker.io": {Name: "docker.io", Mirrors: []string{}, Secure: true, Official: true},
	}, Mirrors: []string{}}
	for _, n := range d.reg.InsecureNets() {
		c.InsecureRegistryCIDRs = append(c.InsecureRegistryCIDRs, (*regtypes.NetIPNet)(n))
	}
	for _, h := range d.reg.InsecureHosts() {
		c.IndexConfigs[h] = &regtypes.IndexInfo{Name: h, Mirrors: []string{}, Secure: false}
	}
	return c
}
