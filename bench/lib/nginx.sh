# Sourced by bench/static.sh and bench/lib/nginx-as-iolite.
#
# nginx_write_conf DIR LISTEN ROOT WORKERS
#   writes DIR/nginx.conf: the tuned nginx the static benchmark compares
#   against, with its pid, logs and temp folders all under DIR, in the
#   foreground (daemon off) so the pid that starts it is the master.
# nginx_run DIR
#   replaces the calling (sub)shell with nginx running that configuration;
#   `nginx_run DIR &` leaves the nginx master's pid in $!.

nginx_write_conf() {
  local dir=$1 listen=$2 root=$3 workers=$4
  mkdir -p "$dir/tmp/body" "$dir/tmp/proxy" "$dir/tmp/fastcgi" \
    "$dir/tmp/uwsgi" "$dir/tmp/scgi" "$dir/logs"
  local user_line=""
  # Workers run as this user, not as nobody, so they can read the corpus
  # wherever it is and nginx does not warn about the user directive.
  if [ "$(id -u)" -eq 0 ]; then user_line="user root root;"; fi
  cat >"$dir/nginx.conf" <<CONF
# Written by bench/lib/nginx.sh: tuned for static files.
$user_line
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;

events {
    worker_connections 4096;
    use epoll;
    multi_accept on;
}

http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    server_tokens off;
    types {
        text/html html;
        application/octet-stream bin;
    }
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    server {
        listen $listen;
        root $root;
        location / {
        }
    }
}
CONF
}

nginx_run() {
  exec nginx -p "$1/" -c "$1/nginx.conf" -e "$1/logs/error.log"
}
