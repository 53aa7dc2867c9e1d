#!/bin/sh
# A non-parsed-header program: its output goes to the client as it is,
# status line included (`curl -i http://127.0.0.1:8080/cgi-bin/nph-hello.sh`).
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n'
echo "Hello, raw."
