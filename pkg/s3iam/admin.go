package s3iam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/slipway/slipway/pkg/blob"
)

// adminPrefix is the path of MinIO's admin API, version 3 (served by every
// MinIO release Slipway runs).
const adminPrefix = "/minio/admin/v3/"

// Admin calls the few MinIO admin operations provisioning needs, signed
// with the root (or an admin) account.
type Admin struct {
	base   string // scheme://host:port
	access string
	secret string
	region string
	http   *http.Client
}

// NewAdmin is a client of the admin API of the server cfg reaches, acting
// with cfg's keys.
func NewAdmin(cfg blob.Config) (*Admin, error) {
	base, err := cfg.EndpointURL()
	if err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	client, err := blob.HTTPClient(cfg, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &Admin{base: base, access: cfg.AccessKey, secret: cfg.SecretKey, region: region, http: client}, nil
}

// AddPolicy creates or replaces the canned policy name.
func (a *Admin) AddPolicy(ctx context.Context, name string, p Policy) error {
	if err := CheckName(name); err != nil {
		return err
	}
	doc, err := p.JSON()
	if err != nil {
		return err
	}
	return a.do(ctx, http.MethodPut, "add-canned-policy", url.Values{"name": {name}}, doc)
}

// RemovePolicy deletes the canned policy name.
func (a *Admin) RemovePolicy(ctx context.Context, name string) error {
	return a.do(ctx, http.MethodDelete, "remove-canned-policy", url.Values{"name": {name}}, nil)
}

// AddUser creates the user accessKey, or sets its secret key if it exists,
// enabled.
func (a *Admin) AddUser(ctx context.Context, accessKey, secretKey string) error {
	if err := CheckName(accessKey); err != nil {
		return err
	}
	return a.doSealed(ctx, http.MethodPut, "add-user", url.Values{"accessKey": {accessKey}}, struct {
		SecretKey string `json:"secretKey"`
		Status    string `json:"status"`
	}{secretKey, "enabled"})
}

// RemoveUser deletes the user accessKey.
func (a *Admin) RemoveUser(ctx context.Context, accessKey string) error {
	return a.do(ctx, http.MethodDelete, "remove-user", url.Values{"accessKey": {accessKey}}, nil)
}

// AttachPolicy attaches the canned policy to user; attaching one already
// attached is not an error.
func (a *Admin) AttachPolicy(ctx context.Context, user, policy string) error {
	err := a.doSealed(ctx, http.MethodPost, "idp/builtin/policy/attach", nil, struct {
		Policies []string `json:"policies"`
		User     string   `json:"user"`
	}{[]string{policy}, user})
	var e *AdminError
	if errors.As(err, &e) && e.Code == "XMinioAdminPolicyChangeAlreadyApplied" {
		return nil
	}
	return err
}

// AdminError is an error answer of the admin API.
type AdminError struct {
	Op      string
	Status  int
	Code    string `json:"Code"`
	Message string `json:"Message"`
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("s3iam: minio admin %s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
}

// doSealed sends v as JSON sealed with the caller's secret key (see seal):
// how the admin API takes a body that carries a secret.
func (a *Admin) doSealed(ctx context.Context, method, op string, q url.Values, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sealed, err := seal(a.secret, body)
	if err != nil {
		return err
	}
	return a.do(ctx, method, op, q, sealed)
}

// do sends one signed admin request and reads its error, if any.
func (a *Admin) do(ctx context.Context, method, op string, q url.Values, body []byte) error {
	// A MinIO that has just started may answer its S3 API already and its
	// admin API not yet (503, XMinioServerNotInitialized): wait that out,
	// as Provision's waitInitialized does for the S3 API.
	ctx, cancel := context.WithTimeout(ctx, initTimeout)
	defer cancel()
	for {
		err := a.send(ctx, method, op, q, body)
		var ae *AdminError
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(initPoll):
		}
	}
}

// initPoll is how often an admin call is tried again while MinIO
// initializes.
const initPoll = 200 * time.Millisecond

// send makes one signed admin request.
func (a *Admin) send(ctx context.Context, method, op string, q url.Values, body []byte) error {
	u := a.base + adminPrefix + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("s3iam: %s: %w", op, err)
	}
	sum := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req = signer.SignV4(*req, a.access, a.secret, "", a.region)
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("s3iam: minio admin %s: %w", op, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	e := &AdminError{Op: op, Status: resp.StatusCode}
	if json.Unmarshal(msg, e) != nil && xml.Unmarshal(msg, e) != nil {
		e.Message = strings.TrimSpace(string(msg))
	}
	return e
}
