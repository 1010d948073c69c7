package oci

import (
	"context"
	"fmt"
	"os"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// credentials are what was found for one registry, and where from, so that
// an authentication failure can say which credentials were refused.
type credentials struct {
	auth   authn.Authenticator
	source string // the config file, or a description of the default lookup
	anon   bool
}

const defaultConfigSource = "the default docker config ($HOME/.docker/config.json or $DOCKER_CONFIG/config.json)"

func (s settings) credentials(ctx context.Context, repo name.Repository) (credentials, error) {
	c := credentials{source: defaultConfigSource}
	var kc authn.Keychain = authn.DefaultKeychain
	if s.DockerConfig != "" {
		c.source = s.DockerConfig
		kc = fileKeychain{path: s.DockerConfig}
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return c, fmt.Errorf("credentials for %s from %s: %w", repo.RegistryStr(), c.source, err)
	}
	c.auth, c.anon = auth, auth == authn.Anonymous
	return c, nil
}

// fileKeychain reads one docker config.json with the docker CLI's own loader
// (auths with base64 "auth" or username/password, identity tokens, credential
// helpers) and looks a registry up the way authn.DefaultKeychain does.
type fileKeychain struct{ path string }

func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	f, err := os.Open(k.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", k.path, err)
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		ac, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, err
		}
		cfg := authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
			IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}
		if cfg != (authn.AuthConfig{}) {
			return authn.FromConfig(cfg), nil
		}
	}
	return authn.Anonymous, nil
}
