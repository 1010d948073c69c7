package marketdockerhub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/netguard"
)

// Bounds on what one listing of Hub reads: its official images are a few
// hundred, so these only stop a misbehaving endpoint.
const (
	hubPageSize     = 100
	hubMaxPages     = 50
	hubMaxBody      = 8 << 20
	hubTagsParallel = 4
)

// hubPage is Hub's answer to GET /v2/repositories/library/?page_size=&page=.
type hubPage struct {
	Count   int64   `json:"count"`
	Next    *string `json:"next"`
	Results []struct {
		Name        string `json:"name"`
		Namespace   string `json:"namespace"`
		Description string `json:"description"`
		StarCount   int64  `json:"star_count"`
		PullCount   int64  `json:"pull_count"`
		LastUpdated string `json:"last_updated"`
	} `json:"results"`
}

// hubTags is Hub's answer to GET /v2/repositories/library/<name>/tags.
type hubTags struct {
	Results []struct {
		Name     string `json:"name"`
		FullSize int64  `json:"full_size"`
	} `json:"results"`
}

// hub lists Docker Hub's official images through Hub's API.
type hub struct {
	base   string // e.g. https://hub.docker.com
	client *http.Client
	log    *slog.Logger
}

// list reads every page of official images, then the most recent page of
// each one's tags (tags are many: the newest hundred is what a person
// picks from, and any tag can still be imported by name).
func (h hub) list(ctx context.Context) ([]App, error) {
	apps, err := h.repositories(ctx)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, hubTagsParallel)
	errs := make([]error, len(apps))
	for i := range apps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = h.tags(ctx, &apps[i])
		}()
	}
	wg.Wait()
	// An app without tags is still importable (tag "latest" or any
	// named one), so a failed tag list only costs its VERSION column;
	// every one failing means the API is not answering.
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			h.log.Warn("docker hub: listing tags", "repository", apps[i].Name, "err", err)
		}
	}
	if failed > 0 && failed == len(apps) {
		return nil, fmt.Errorf("docker hub %s: no tag list could be read: %w", h.base, errs[0])
	}
	return apps, nil
}

func (h hub) repositories(ctx context.Context) ([]App, error) {
	next := fmt.Sprintf("%s/v2/repositories/library/?page_size=%d&page=1", h.base, hubPageSize)
	var apps []App
	for page := 1; next != ""; page++ {
		if page > hubMaxPages {
			return nil, fmt.Errorf("docker hub %s: more than %d pages of official images", h.base, hubMaxPages)
		}
		var p hubPage
		if err := h.get(ctx, next, &p); err != nil {
			return nil, err
		}
		for _, r := range p.Results {
			if r.Name == "" {
				continue
			}
			apps = append(apps, App{Name: r.Name, Description: r.Description, Stars: r.StarCount,
				Pulls: r.PullCount, LastUpdated: r.LastUpdated, Source: "docker://" + r.Name})
		}
		next = ""
		if p.Next != nil && *p.Next != "" {
			u, err := h.sameOrigin(*p.Next)
			if err != nil {
				return nil, err
			}
			next = u
		}
	}
	return apps, nil
}

func (h hub) tags(ctx context.Context, a *App) error {
	u := fmt.Sprintf("%s/v2/repositories/library/%s/tags?page_size=%d", h.base, url.PathEscape(a.Name), hubPageSize)
	var t hubTags
	if err := h.get(ctx, u, &t); err != nil {
		return err
	}
	for _, r := range t.Results {
		a.Tags = append(a.Tags, r.Name)
	}
	def := dockerurl.PickTag(a.Tags)
	for _, r := range t.Results {
		if r.Name == def {
			a.Size = r.FullSize
		}
	}
	return nil
}

// sameOrigin keeps pagination on the API that was configured: a "next"
// link elsewhere is refused rather than followed.
func (h hub) sameOrigin(next string) (string, error) {
	base, err := url.Parse(h.base)
	if err != nil {
		return "", fmt.Errorf("docker hub API %q: %w", h.base, err)
	}
	u, err := base.Parse(next)
	if err != nil {
		return "", fmt.Errorf("docker hub %s: next page %q: %w", h.base, next, err)
	}
	if u.Scheme != base.Scheme || u.Host != base.Host {
		return "", fmt.Errorf("docker hub %s: next page %q is on another host", h.base, next)
	}
	return u.String(), nil
}

func (h hub) get(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("docker hub: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if refused, ok := netguard.AsRefused(err); ok {
		return fmt.Errorf("docker hub: GET %s: %w", u, refused) // without the dialer's retelling
	}
	if err != nil {
		return fmt.Errorf("docker hub: %w", err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, hubMaxBody)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(body, 512))
		return fmt.Errorf("docker hub: GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("docker hub: GET %s: decode: %w", u, err)
	}
	return nil
}
