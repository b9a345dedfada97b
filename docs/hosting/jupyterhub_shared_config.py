# JupyterHub with ONE shared class server: the hub logs students in, and a single server (the
# account "class") runs every student's pages, each page a kernel forked from one warm process
# that holds torch and the models (explainers/app/forking.py). A student then costs about
# 0.1-0.2 GB instead of about 0.6 GB (a server and a kernel of their own): docs/hosting.md.
# What students give up: their own server and its isolation (they share the class account's
# files and processes; the pages run no code of theirs, but a student who opens a terminal or
# the contents API on the class server reaches the others' kernels). Use it for a class that
# only opens the pages; use jupyterhub_config.py when students write code.
#   pip install jupyterhub jupyterhub-systemdspawner jupyterhub-idle-culler   (+ cv-explainers)
#   jupyterhub -f jupyterhub_shared_config.py
# Before the class, the lecturer starts the class server: log in as "class" and open
# /hub/spawn, or an admin clicks "start" for "class" on /hub/admin. tests/app/test_hub_load.py
# runs this very file too.
import os

c = get_config()  # noqa: F821  (provided by JupyterHub)
load_subconfig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "jupyterhub_config.py"))  # noqa: F821

CLASS_USER = "class"
#: pages (kernels) the class server runs at once: about 0.4 GB each on top of ~2 GB paid once
#: (the server and the zygote); a 32 GB machine: (32 - 2) / 0.4 = 75
CLASS_PAGES = 75

# everybody lands on the class server's tour; students have no server of their own
c.JupyterHub.default_url = f"/user/{CLASS_USER}/voila/render/00_tour.ipynb"
c.JupyterHub.active_server_limit = 1
c.Authenticator.allowed_users = {CLASS_USER}               # plus your students: {"class", "student1", ...}
c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if r["name"] != "user"] + [
    # a student may open the class server's pages, and nothing else (not even a server of their
    # own); the class server learns their name (the two read scopes its log-in asks for)
    {"name": "user", "scopes": ["read:users:name!user", "read:users:groups!user",
                                "access:servers!user=" + CLASS_USER]},
    # the class account (the lecturer) starts and stops it
    {"name": "class-server", "scopes": ["self"], "users": [CLASS_USER]},
]

# a student opening the class server is not asked "authorize access to class's server?" each
# time (the hub asks by default when a server is not the user's own): the class server's OAuth
# client is trusted, as an admin-run service would be
c.JupyterHub.tornado_settings = {"oauth_no_confirm_list": {f"jupyterhub-user-{CLASS_USER}"}}

# the class server: kernels forked from one warm process, at most CLASS_PAGES of them (page
# CLASS_PAGES + 1 gets "the server is full, try again in a minute"), the whole machine's memory
c.Spawner.args = list(c.Spawner.args) + [
    "--KernelProvisionerFactory.default_provisioner_name=explainers-forking",
    "--ServerApp.kernel_manager_class=explainers.app.server.CappedKernelManager",
    f"--CappedKernelManager.max_kernels={CLASS_PAGES}",
]
c.Spawner.mem_limit = None
c.Spawner.cpu_limit = None
