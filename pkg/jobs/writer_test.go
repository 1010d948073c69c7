package jobs

import (
	"bytes"
	"testing"
)

func TestWriterReportsEachWrite(t *testing.T) {
	var buf bytes.Buffer
	var got [][2]int64
	w := &Writer{W: &buf, Total: 5, Report: func(done, total int64) { got = append(got, [2]int64{done, total}) }}
	for _, s := range []string{"ab", "cde"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != "abcde" || len(got) != 2 || got[0] != [2]int64{2, 5} || got[1] != [2]int64{5, 5} {
		t.Errorf("wrote %q, reported %v", buf.String(), got)
	}
}
