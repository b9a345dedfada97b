"""Ports for the tests that start servers (127.0.0.1 only)."""
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Nothing listens on the port, and a new server (SO_REUSEADDR, as tornado binds) can take it."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def page_kernels(server_pid: int) -> list:
    """The page kernels under a server: plain ipykernel processes, or forks of its zygote
    (``explainers.app.forking``; a fork keeps the zygote's command line, so the zygote's
    children are the kernels). Zombies (exiting) are not counted."""
    import psutil

    out = []
    for p in psutil.Process(server_pid).children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            line = " ".join(p.cmdline())
            if "ipykernel" in line or ("explainers.app.forking" in line and p.ppid() != server_pid):
                out.append(p)
        except psutil.Error:      # it is exiting
            pass
    return out
