#!/usr/bin/perl
# The meta-variables a program gets (RFC 3875):
# `curl 'http://127.0.0.1:8080/cgi-bin/env.pl/path/info?x=1'`
use strict;
use warnings;
print "Content-Type: text/plain\r\n\r\n";
print "$_=$ENV{$_}\n" for sort keys %ENV;
print "argv: @ARGV\n" if @ARGV;
