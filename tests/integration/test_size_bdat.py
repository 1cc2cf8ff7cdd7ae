#!/usr/bin/python3
"""
test_size_bdat.py - SIZE (RFC 1870) and CHUNKING/BDAT (RFC 3030).

message_size 100K (102400 octets).
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

LIMIT = 100 * 1024
env = None


def fresh():
    c = env.client()
    c.start()
    return c


def queue_names():
    return set(lib.list_dir(lib.queue_dir(env.spool)))


def t_size_advertised():
    c = env.client()
    r = c.start()
    check("SIZE %d" % LIMIT in r.lines[1:], "EHLO should list 'SIZE %d': %s"
          % (LIMIT, r))
    c.quit()


def t_size_param_refused():
    c = fresh()
    c.expect("MAIL FROM:<s@client.test> SIZE=%d" % (LIMIT * 2), 552, "5.3.4",
             "MAIL SIZE= twice the limit")
    c.expect("MAIL FROM:<s@client.test> SIZE=99999999999999999999", 552,
             "5.3.4", "MAIL SIZE= with 20 digits")
    c.expect("MAIL FROM:<s@client.test> SIZE=50000", 250, "2.1.0",
             "MAIL SIZE= under the limit")
    c.quit()


def t_oversize_data_then_next_message():
    c = fresh()
    before = queue_names()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    big = lib.message("big", body=lib.random_body(LIMIT + LIMIT // 2))
    c.send(lib.dot_stuff(big))
    early = c.pending_data(1.0)
    check(early == b"", "server replied before the final dot (RFC 5321 "
          "4.1.1.4: the reply comes after the end of data): %r" % early)
    c.send(b".\r\n")
    expect_reply(c.read_reply(30), 552, "5.3.4", "message over the limit")
    # Same session, next transaction, no RSET needed (RFC 5321 4.1.1.4).
    small = lib.message("small after big")
    qid = c.send_message("s@client.test", ["alice@example.com"], small)
    c.quit()
    check(queue_names() - before == {qid}, "queue changes %s, expected only "
          "%s" % (queue_names() - before, qid))
    lib.queue_file(env.spool, qid).received_and_body(small)
    lib.wait_tmp_empty(env.spool)


def bdat(c, chunk, last=False):
    c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
    return c.read_reply(30)


def expect_chunk_ok(r, n):
    check(r.code == 250 and r.lines[0] == "2.0.0 %d octets received" % n,
          "BDAT %d: expected '250 2.0.0 %d octets received', got '%s'" % (
              n, n, r))


def t_bdat_chunks_split_crlf():
    content = (b"From: <s@client.test>\r\nSubject: bdat chunks\r\n\r\n"
               b"line one\r\n.\r\n..two dots stay\r\n"
               b"MAIL FROM:<evil@x>\r\nlast line\r\n")
    # Cut inside CRLFs: a chunk ending in CR, the next starting with LF.
    cuts = []
    pos = 0
    while True:
        i = content.find(b"\r\n", pos)
        if i < 0:
            break
        cuts.append(i + 1)
        pos = i + 2
    pieces = []
    prev = 0
    for k in cuts[::2]:
        pieces.append(content[prev:k])
        prev = k
    pieces.append(content[prev:])
    check(pieces[0].endswith(b"\r") and pieces[1].startswith(b"\n"),
          "test bug")
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    for p in pieces:
        expect_chunk_ok(bdat(c, p), len(p))
    r = bdat(c, b"", last=True)
    qid = r.queue_id()
    check(qid, "BDAT 0 LAST: expected 250 queued, got '%s'" % r)
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(content)


def t_bdat_single_last():
    content = lib.message("bdat one", body=b".\r\n.\r\nno unstuffing\r\n")
    c = fresh()
    c.mail_rcpt("s@client.test", ["bob@example.com"])
    r = bdat(c, content, last=True)
    qid = r.queue_id()
    check(qid, "BDAT n LAST: %s" % r)
    # The session goes on: a DATA transaction next.
    m2 = lib.message("data after bdat")
    qid2 = c.send_message("s@client.test", ["bob@example.com"], m2)
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(content)
    lib.queue_file(env.spool, qid2).received_and_body(m2)


def t_bdat_pipelined():
    content = lib.message("bdat pipelined", body=lib.random_body(3000))
    a, b = content[:1000], content[1000:]
    c = fresh()
    c.send(b"MAIL FROM:<s@client.test>\r\nRCPT TO:<alice@example.com>\r\n"
           + b"BDAT %d\r\n" % len(a) + a
           + b"BDAT %d LAST\r\n" % len(b) + b + b"QUIT\r\n")
    rs = [c.read_reply(30) for _ in range(5)]
    check(rs[0].code == 250 and rs[1].code == 250, "MAIL/RCPT: %s" % rs)
    expect_chunk_ok(rs[2], len(a))
    qid = rs[3].queue_id()
    check(qid, "BDAT LAST: %s" % rs[3])
    expect_reply(rs[4], 221, None, "QUIT")
    c.wait_closed(5)
    c.close()
    lib.queue_file(env.spool, qid).received_and_body(content)


def t_bdat_large_streamed():
    content = lib.message("bdat large", body=lib.random_body(90 * 1024))
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    step = 32 * 1024 + 7
    chunks = [content[i:i + step] for i in range(0, len(content), step)]
    for ch in chunks[:-1]:
        expect_chunk_ok(bdat(c, ch), len(ch))
    qid = bdat(c, chunks[-1], last=True).queue_id()
    check(qid, "not queued")
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(content)


def t_bdat_syntax():
    # After a malformed BDAT the chunk length is unknown, so the server may
    # close the connection (it cannot find the next command); both are fine.
    for line in ("BDAT", "BDAT abc", "BDAT -1", "BDAT 5 LATER"):
        c = fresh()
        c.mail_rcpt("s@client.test", ["alice@example.com"])
        c.expect(line, 501, "5.5.4", line)
        c.close()


def t_bdat_then_data_refused():
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    expect_chunk_ok(bdat(c, b"Subject: x\r\n"), 12)
    c.expect("DATA", 503, "5.5.1", "DATA after BDAT in one transaction "
             "(RFC 3030 3)")
    c.quit()


def t_bdat_oversize():
    before = queue_names()
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    body = lib.message("bdat big", body=lib.random_body(LIMIT + 20000))
    step = 30000
    chunks = [body[i:i + step] for i in range(0, len(body), step)]
    replies = []
    for i, ch in enumerate(chunks):
        r = bdat(c, ch, last=(i == len(chunks) - 1))
        replies.append(r)
        if r.code != 250 or r.queue_id():
            break       # RFC 3030: no more chunks after an error
    last = replies[-1]
    expect_reply(last, 552, "5.3.4", "BDAT over message_size (chunk %d of "
                 "%d)" % (len(replies), len(chunks)))
    c.expect("RSET", 250)
    small = lib.message("small after big bdat")
    r = bdat_transaction(c, small)
    c.quit()
    check(queue_names() - before == {r}, "queue changes: %s" % (
        queue_names() - before))
    lib.wait_tmp_empty(env.spool)


def bdat_transaction(c, content):
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    r = bdat(c, content, last=True)
    qid = r.queue_id()
    check(qid, "BDAT LAST: %s" % r)
    return qid


def t_bdat_nul():
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    r = bdat(c, b"Subject: nul\r\n\r\nx\x00y\r\n", last=True)
    expect_reply(r, 554, "5.6.0", "NUL in BDAT content")
    c.expect("RSET", 250)
    bdat_transaction(c, lib.message("after nul"))
    c.quit()


def main(runner):
    global env
    env = lib.Env("sizebdat", limits={"message_size": "100K",
                                      "bare_newline": "reject"})
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)
    runner.run("tmp_empty", lib.wait_tmp_empty, env.spool)


if __name__ == "__main__":
    lib.main_guard(main)
