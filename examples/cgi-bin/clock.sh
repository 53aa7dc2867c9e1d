#!/bin/sh
# A program that streams: one line a second, seen as it comes
# (`curl -N http://127.0.0.1:8080/cgi-bin/clock.sh`).
printf 'Content-Type: text/plain\r\n\r\n'
for i in 1 2 3 4 5; do
  date -u '+%H:%M:%S'
  sleep 1
done
