package bus

import "testing"

func TestBucketName(t *testing.T) {
	for _, c := range []struct{ prefix, name, want string }{
		{"slipway", "catalog_images", "slipway_catalog_images"},
		{"it-1.x", "launcher_vms", "it-1_x_launcher_vms"},
	} {
		if got := BucketName(c.prefix, c.name); got != c.want {
			t.Errorf("BucketName(%q, %q) = %q, want %q", c.prefix, c.name, got, c.want)
		}
	}
}

func TestDecodeQuery(t *testing.T) {
	var v struct {
		ID int64 `json:"id"`
	}
	if err := DecodeQuery([]byte(" \n"), &v); err != nil || v.ID != 0 {
		t.Fatalf("empty request: %v, %+v", err, v)
	}
	if err := DecodeQuery([]byte(`{"id": 7}`), &v); err != nil || v.ID != 7 {
		t.Fatalf("good request: %v, %+v", err, v)
	}
	err := DecodeQuery([]byte(`{"id": 7, "nope": 1}`), &v)
	if ErrorCode(err) != CodeInvalid {
		t.Fatalf("unknown field: got %v (code %q), want an Invalid error", err, ErrorCode(err))
	}
}
