"""The console's ES modules exercised inside Chromium on a static page:
the transcript view (partials replaced in place, finals fixed, ordering,
follow unless scrolled back) and the stream client's resume bookkeeping
against a scripted WebSocket (what a real server rarely does on demand:
resume in the middle of a frame, a short last frame, a takeover)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading

import pytest
from django.utils import translation

from sessions.web.i18n import js_catalog
from tests.browser.conftest import REPO, launched_chromium
from tests.servers import free_port

pytestmark = pytest.mark.browser

TRANSCRIPT_VIEW_JS = """async () => {
  const { TranscriptView } = await import('/static/console/transcript-view.js');
  const list = document.createElement('ol');
  list.className = 'transcript';
  list.style.maxHeight = '200px';
  list.style.overflowY = 'auto';
  const jump = document.createElement('button');
  document.body.append(list, jump);
  const view = new TranscriptView(list, { jumpButton: jump });
  const rows = () => [...list.children].map(
    li => [li.dataset.segmentId, li.className, li.querySelector('.text').textContent]);
  view.apply({segment_id: 'a', revision: 0, is_final: false, start_ms: 0, text: 'hel'});
  view.apply({segment_id: 'a', revision: 1, is_final: false, start_ms: 0, text: 'hello'});
  const partial = rows();
  view.apply({segment_id: 'a', revision: 2, is_final: true, start_ms: 0, text: 'hello there'});
  view.apply({segment_id: 'a', revision: 3, is_final: false, start_ms: 0, text: 'changed after final'});
  const fixed = rows();
  for (let i = 2; i < 40; i++) view.apply({segment_id: 's' + i, is_final: true, start_ms: i * 2000, text: 'line ' + i});
  view.apply({segment_id: 'early', is_final: true, start_ms: 1000, text: 'early'});
  const order = [...list.children].slice(0, 3).map(li => li.dataset.segmentId);
  const followed = list.scrollTop + list.clientHeight >= list.scrollHeight - 2;
  list.scrollTop = 0;
  list.dispatchEvent(new Event('scroll'));
  view.apply({segment_id: 'late', is_final: false, start_ms: 99000, text: 'new words'});
  const stayedBack = list.scrollTop === 0;
  const jumpShown = !jump.hidden;
  jump.click();
  const backAtEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 2;
  return {partial, fixed, order, followed, stayedBack, jumpShown, backAtEnd,
          text: view.finalsText().split('\\n').slice(0, 2), finals: view.finalCount()};
}"""

STREAM_CLIENT_JS = """async () => {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
    send(data) { this.sent.push(typeof data === 'string' ? data : new Uint8Array(data)); }
    close() { this.readyState = 3; }
    server(msg) { this.onmessage({ data: JSON.stringify(msg) }); }
    binary() { return this.sent.filter(d => typeof d !== 'string'); }
  }
  FakeSocket.OPEN = 1;
  window.WebSocket = FakeSocket;
  const { StreamClient } = await import('/static/console/stream-client.js');
  const states = [];
  const tokens = ['t2', 't3'];
  const client = new StreamClient({
    url: '/ws/v1/sessions/x/stream', token: 't1', keepCopy: true,
    freshToken: async () => tokens.shift(),
    on: { state: s => states.push(s) },
  });
  const frame = (n, size = 3200) => new Uint8Array(size).fill(n);
  const wait = (pred) => new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => pred() ? resolve()
      : Date.now() - started > 5000 ? reject(new Error('timeout')) : setTimeout(poll, 20);
    poll();
  });
  client.start();
  client.sendAudio(frame(1));  // before Begin: held, not sent
  const heldBeforeBegin = sockets[0].binary().length;
  sockets[0].server({type: 'Begin', resume_from_byte: 0});
  for (let i = 2; i <= 5; i++) client.sendAudio(frame(i));
  const firstSent = sockets[0].binary().map(b => b.length);
  sockets[0].server({type: 'Ack', audio_bytes_durable: 6400});
  const heldAfterAck = client.frames.length;
  // One final and a partial reached us; a reconnect counts the final only.
  sockets[0].server({type: 'Transcript', segment_id: 'f-0', is_final: true, start_ms: 0, end_ms: 200, text: 'a'});
  sockets[0].server({type: 'Transcript', segment_id: 'f-200', is_final: false, start_ms: 200, end_ms: 300, text: 'b'});
  sockets[0].onclose({ code: 1006 });  // dropped
  client.sendAudio(frame(6));  // captured while disconnected
  await wait(() => sockets.length === 2);
  const second = sockets[1];
  second.server({type: 'Begin', resume_from_byte: 7400});  // mid-frame
  const resent = second.binary();
  const resentSizes = resent.map(b => b.length);
  const copy = client.copiedBytes();
  let same = resent.reduce((n, b) => n + b.length, 0) === copy.length - 7400;
  let at = 7400;
  for (const b of resent) for (const v of b) same = same && v === copy[at++];
  client.sendAudio(frame(7, 100));  // a last piece shorter than 20 ms
  const finished = client.finish();
  const tail = second.sent.slice(-2);
  second.server({type: 'Metadata', audio_ms: 700, segments: 0});
  second.onclose({ code: 1000 });
  await finished;
  const padded = tail[0];
  return {
    heldBeforeBegin, firstSent, heldAfterAck, firstUrl: sockets[0].url, secondUrl: second.url, resentSizes, same,
    paddedLength: padded.length, paddedHead: padded[0], paddedTail: padded[639],
    closeMessage: tail[1], produced: client.produced, copyLength: client.copiedBytes().length,
    states, reconnects: client.reconnects,
  };
}"""

TAKEN_OVER_JS = """async () => {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 1; sockets.push(this); }
    send() {}
    close() {}
  }
  FakeSocket.OPEN = 1;
  window.WebSocket = FakeSocket;
  const { StreamClient } = await import('/static/console/stream-client.js');
  const { errorText, warningText, queuedText } = await import('/static/console/notices.js');
  const client = new StreamClient({ url: '/ws/v1/sessions/x/stream', token: 't1', freshToken: async () => 't2' });
  client.start();
  sockets[0].onmessage({ data: JSON.stringify({type: 'Begin', resume_from_byte: 0}) });
  sockets[0].onmessage({ data: JSON.stringify({type: 'Error', code: 'taken_over', message: 'x', retryable: false}) });
  sockets[0].onclose({ code: 4409 });
  let error = null;
  try { await client.finished; } catch (e) { error = e.code; }
  await new Promise(r => setTimeout(r, 600));
  return {
    error, sockets: sockets.length, state: client.state,
    taken: errorText('taken_over'),
    storage: warningText({code: 'storage_retry', message: 'Storing audio is delayed.'}),
    unknown: warningText({code: 'something_new', message: 'Heads up'}),
    queued: queuedText({position: 3}),
  };
}"""


NOTE_EVIDENCE_JS = """async () => {
  const { evidenceIds, evidenceSpan, highlightEvidence, SpanPlayer } = await import('/static/console/note.js');
  const list = document.createElement('ol');
  list.id = 'transcript';
  for (const [id, start, end] of [['a', 0, 1800], ['b', 2000, 3800], ['c', 4000, 5800]]) {
    const li = document.createElement('li');
    Object.assign(li, { id: 'seg-' + id });
    li.dataset.start = start;
    li.dataset.end = end;
    list.append(li);
  }
  document.body.append(list);
  const link = document.createElement('a');
  link.dataset.evidence = 'c  a missing';
  const ids = evidenceIds(link);
  const first = highlightEvidence(ids).map(li => li.id);
  const span = evidenceSpan(first.map(id => document.getElementById(id)));
  const second = highlightEvidence(['b']).map(li => li.id);
  const marked = [...list.querySelectorAll('li.evidence')].map(li => [li.id, li.getAttribute('aria-current')]);
  const unmarked = list.querySelector('#seg-a').hasAttribute('aria-current');

  // An <audio> stand-in: what SpanPlayer touches, with a clock the test moves.
  class FakeAudio extends EventTarget {
    constructor() { super(); this.readyState = 1; this.currentTime = 0; this.paused = true; this.pauses = 0; }
    async play() { this.paused = false; }
    pause() { this.paused = true; this.pauses += 1; }
  }
  const audio = new FakeAudio();
  const player = new SpanPlayer(audio);
  await player.play(4000, 5800);
  const started = [audio.currentTime, audio.paused, player.stopAt];
  audio.currentTime = 5.0;
  audio.dispatchEvent(new Event('timeupdate'));
  const midway = audio.paused;
  // A later span replaces the first: its end, not the first's, stops it.
  await player.play(2000, 3800);
  audio.currentTime = 3.9;
  audio.dispatchEvent(new Event('timeupdate'));
  const ended = [audio.paused, player.stopAt];
  return { ids, first, span, second, marked, unmarked, started, midway, ended };
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def console_page(tmp_path_factory):
    """A page with the English string catalogue, served with the console's
    static files from 127.0.0.1 (a secure context) — no Django server."""
    root = tmp_path_factory.mktemp("modules")
    shutil.copytree(REPO / "static", root / "static")
    with translation.override("en"):
        catalog = json.dumps(js_catalog())
    (root / "index.html").write_text(
        f'<!doctype html><meta charset="utf-8"><script id="console-i18n" type="application/json">{catalog}</script>',
        encoding="utf-8",
    )
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with launched_chromium() as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
            yield page
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_it_replaces_partials_in_place_fixes_finals_and_follows_unless_scrolled_back(console_page):
    r = console_page.evaluate(TRANSCRIPT_VIEW_JS)
    assert r["partial"] == [["a", "partial", "hello"]]
    assert r["fixed"] == [["a", "final", "hello there"]]
    assert r["order"] == ["a", "early", "s2"]
    assert r["followed"] is True
    assert r["stayedBack"] is True and r["jumpShown"] is True and r["backAtEnd"] is True
    assert r["text"] == ["[00:00] hello there", "[00:01] early"]
    assert r["finals"] == 40


def test_it_resends_exactly_the_unacknowledged_audio_after_a_drop(console_page):
    r = console_page.evaluate(STREAM_CLIENT_JS)
    assert r["heldBeforeBegin"] == 0
    assert r["firstSent"] == [3200] * 5
    assert r["heldAfterAck"] == 3  # frames 1-2 are durable and dropped from the buffer
    assert "token=t2" in r["secondUrl"] and "takeover=1" in r["secondUrl"]
    # The finals received so far (one; partials don't count): the server re-sends the rest.
    assert "finals_received=1" in r["secondUrl"] and "finals_received" not in r["firstUrl"]
    # From byte 7400 to the end (19,200): every chunk within 20..1000 ms.
    assert r["same"] is True
    assert sum(r["resentSizes"]) == 19_200 - 7400
    assert all(640 <= size <= 32_000 for size in r["resentSizes"])
    # The 100-byte tail went out padded to 20 ms, then CloseStream.
    assert (r["paddedLength"], r["paddedHead"], r["paddedTail"]) == (640, 7, 0)
    assert r["closeMessage"] == '{"type":"CloseStream"}'
    assert r["produced"] == r["copyLength"] == 6 * 3200 + 640
    assert r["states"] == ["connecting", "live", "reconnecting", "reconnecting", "live", "finishing", "closed"]
    assert r["reconnects"] == 1


def test_it_stops_for_good_when_another_screen_takes_the_recording_over(console_page):
    r = console_page.evaluate(TAKEN_OVER_JS)
    assert r["error"] == "taken_over"
    assert r["sockets"] == 1  # no reconnect fight
    assert r["state"] == "failed"
    assert r["taken"].startswith("This consultation is now being recorded on another screen")
    assert r["storage"] == "Saving audio is delayed; it is kept and saving is retried."
    assert r["unknown"] == "Note from the server: Heads up"
    assert r["queued"].startswith("All transcription slots are busy. You are number 3 in the queue")


def test_it_marks_a_sentences_evidence_lines_and_plays_only_their_span(console_page):
    r = console_page.evaluate(NOTE_EVIDENCE_JS)
    assert r["ids"] == ["c", "a", "missing"]
    assert r["first"] == ["seg-c", "seg-a"]  # an id not on the page is skipped
    assert r["span"] == [0, 5800]  # from the earliest start to the latest end
    assert r["second"] == ["seg-b"]
    assert r["marked"] == [["seg-b", "true"]] and r["unmarked"] is False  # the earlier marks are cleared
    assert r["started"] == [4.0, False, 5.8]
    assert r["midway"] is False
    assert r["ended"] == [True, None]
