package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// imageTable maps image names to the entrypoint a container of that image
// runs. There are no images here: an image is only a name for a local
// command. The files are re-read when they change; a later file's entries
// win over an earlier one's.
//
//	images:
//	  mcpctl/runner: []            # empty entrypoint: run the container's args
//	  python: [python3]            # entrypoint, followed by the container's args
type imageTable struct {
	files []*imageFileState
	mu    sync.Mutex
}

type imageFileState struct {
	path    string
	modTime time.Time
	size    int64
	entries map[string][]string
	loadErr error
}

type imageFile struct {
	Images map[string][]string `json:"images"`
}

// newImageTable takes a comma-separated list of YAML files.
func newImageTable(paths string) *imageTable {
	t := &imageTable{}
	for _, p := range strings.Split(paths, ",") {
		if p = strings.TrimSpace(p); p != "" {
			t.files = append(t.files, &imageFileState{path: p, entries: map[string][]string{}})
		}
	}
	return t
}

func (f *imageFileState) reload() {
	st, err := os.Stat(f.path)
	if err != nil {
		f.loadErr = err
		f.entries = map[string][]string{}
		return
	}
	if st.ModTime().Equal(f.modTime) && st.Size() == f.size && f.loadErr == nil {
		return
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.loadErr = err
		return
	}
	var parsed imageFile
	if err := yaml.UnmarshalStrict(data, &parsed); err != nil {
		f.loadErr = fmt.Errorf("%s: %w", f.path, err)
		return
	}
	f.entries = parsed.Images
	if f.entries == nil {
		f.entries = map[string][]string{}
	}
	f.modTime, f.size, f.loadErr = st.ModTime(), st.Size(), nil
}

// lookup finds the entrypoint of an image. It tries the name as given, then
// without digest and tag, then without leading registry/organisation parts
// (so "docker.io/library/python:3.12" finds "python").
func (t *imageTable) lookup(image string) ([]string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, f := range t.files {
		f.reload()
		if f.loadErr != nil {
			errs = append(errs, f.loadErr)
		}
	}
	for _, name := range imageCandidates(image) {
		for i := len(t.files) - 1; i >= 0; i-- {
			if ep, ok := t.files[i].entries[name]; ok {
				return append([]string(nil), ep...), true, nil
			}
		}
	}
	return nil, false, errors.Join(errs...)
}

func (t *imageTable) describe() string {
	var paths []string
	for _, f := range t.files {
		paths = append(paths, f.path)
	}
	return strings.Join(paths, ", ")
}
func imageCandidates(image string) []string {
	out := []string{image}
	name := image
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
		out = append(out, name)
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
		out = append(out, name)
	}
	for {
		i := strings.Index(name, "/")
		if i < 0 {
			break
		}
		name = name[i+1:]
		out = append(out, name)
	}
	return out
}
