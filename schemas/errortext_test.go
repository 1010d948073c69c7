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
