#!/usr/bin/python3
"""A form and its POST: `curl --data 'name=you&color=blue' http://127.0.0.1:8080/cgi-bin/form.py`"""
import html
import os
import sys
import urllib.parse

fields = {}
if os.environ.get("REQUEST_METHOD") == "POST":
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    fields = urllib.parse.parse_qs(sys.stdin.read(length))
sys.stdout.write("Content-Type: text/html; charset=utf-8\r\n\r\n")
sys.stdout.write("<!doctype html><title>form</title>\n")
for name, values in sorted(fields.items()):
    sys.stdout.write(f"<p>{html.escape(name)}: {html.escape(', '.join(values))}</p>\n")
sys.stdout.write(
    '<form method="post"><input name="name"> <input name="color">'
    " <button>send</button></form>\n"
)
