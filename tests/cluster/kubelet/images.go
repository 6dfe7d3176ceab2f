package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// imageTable maps image names to the entrypoint a container of that image
// runs. There are no images here: an image is only a name for a local
// command. The file is re-read when it changes.
//
//	images:
//	  mcpctl/runner: []            # empty entrypoint: run the container's args
//	  python: [python3]            # entrypoint, followed by the container's args
type imageTable struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	entries map[string][]string
	loadErr error
}

type imageFile struct {
	Images map[string][]string `json:"images"`
}

func newImageTable(path string) *imageTable {
	return &imageTable{path: path, entries: map[string][]string{}}
}

func (t *imageTable) reload() {
	if t.path == "" {
		return
	}
	st, err := os.Stat(t.path)
	if err != nil {
		t.loadErr = err
		return
	}
	if st.ModTime().Equal(t.modTime) && st.Size() == t.size && t.loadErr == nil {
		return
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		t.loadErr = err
		return
	}
	var f imageFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.loadErr = fmt.Errorf("%s: %w", t.path, err)
		return
	}
	t.entries = f.Images
	if t.entries == nil {
		t.entries = map[string][]string{}
	}
	t.modTime, t.size, t.loadErr = st.ModTime(), st.Size(), nil
}

// lookup finds the entrypoint of an image. It tries the name as given, then
// without digest and tag, then without leading registry/organisation parts
// (so "docker.io/library/python:3.12" finds "python").
func (t *imageTable) lookup(image string) ([]string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reload()
	for _, name := range imageCandidates(image) {
		if ep, ok := t.entries[name]; ok {
			return append([]string(nil), ep...), true, nil
		}
	}
	return nil, false, t.loadErr
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
