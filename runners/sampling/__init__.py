"""Sampling the server: PSS, USS, RSS and CPU of every process of its tree, from /proc
(``memory``); what each process's memory is, from /proc/PID/smaps (``smaps``); what
its workers allocate (``memprofile``) and where its CPU goes (``cpuprofile``)."""
