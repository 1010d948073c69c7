package schemas

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorTextFitsTheSchema(t *testing.T) {
	if ErrorText("") != "unknown error" {
		t.Error("empty message kept empty")
	}
	long := strings.Repeat("é", MaxErrorLen) // two bytes a rune: a cut may fall mid-rune
	got := ErrorText(long)
	if len(got) > MaxErrorLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("clipped to %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func TestPeekImageID(t *testing.T) {
	if id, ok := PeekImageID([]byte(`{"image_id": 7, "junk": true}`)); !ok || id != 7 {
		t.Errorf("got %d %v", id, ok)
	}
	for _, bad := range []string{`{`, `{"image_id": -1}`, `{}`} {
		if _, ok := PeekImageID([]byte(bad)); ok {
			t.Errorf("%s: found an image id", bad)
		}
	}
}

// TestFailureCodesAreTheCatalogue checks that a failed event takes exactly
// the catalogue's codes, and that the generated lookup agrees with it.
func TestFailureCodesAreTheCatalogue(t *testing.T) {
	codes := ErrorCodes()
	if len(codes) == 0 {
		t.Fatal("empty catalogue")
	}
	for _, c := range codes {
		f := Failure{Code: c.Code, Error: "e", Retryable: c.Retryable}
		if err := ValidateValue(KindEvent, ServiceConverter, EventConverterFailed, f); err != nil {
			t.Errorf("code %q refused: %v", c.Code, err)
		}
		if got, ok := LookupErrorCode(c.Code); !ok || got != c {
			t.Errorf("LookupErrorCode(%q) = %+v, %v", c.Code, got, ok)
		}
	}
	if err := ValidateValue(KindEvent, ServiceConverter, EventConverterFailed, Failure{Code: "no-such-code", Error: "e"}); err == nil {
		t.Error("a code outside the catalogue validated")
	}
	if c, ok := LookupErrorCode(CodeImageLocked); !ok || !c.Retryable {
		t.Errorf("image-locked: %+v %v, want a retryable code", c, ok)
	}
	if c, _ := LookupErrorCode(CodeHostNotFound); c.Retryable {
		t.Error("host-not-found is retryable")
	}
	if _, ok := LookupErrorCode("nope"); ok {
		t.Error("found a code that is not in the catalogue")
	}
}
