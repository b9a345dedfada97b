# A plain JupyterHub (one machine, no Kubernetes) serving the explainers to a class.
#   pip install jupyterhub jupyterhub-systemdspawner jupyterhub-idle-culler   (+ cv-explainers)
#   npm install -g configurable-http-proxy
#   jupyterhub -f jupyterhub_config.py
# tests/app/test_hub_load.py runs a real hub with this very file (only the log-in, the spawner,
# the ports and the class size are replaced on the command line, which loads after this file).
c = get_config()  # noqa: F821  (provided by JupyterHub)

c.JupyterHub.bind_url = "http://127.0.0.1:8000"          # put nginx/TLS in front of it

# Log-in: the machine's own accounts (PAM, real passwords). Nobody is let in until you list
# the students (fails closed); for a university SSO or an LMS use OAuthenticator or
# LTIAuthenticator instead (see hosting.md). Never the dummy authenticator on a network.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allow_all = False
c.Authenticator.allowed_users = set()                      # fill in: {"student1", "student2", ...}
c.Authenticator.admin_users = set()

# How many students' servers run at once: what the machine's memory holds (docs/hosting.md,
# "A class on a real JupyterHub": 620 MB unique memory per student measured, planned at 0.75 GB, plus 1.5 GB for
# the hub and the libraries all students share). Student N+1 gets the hub's "Active user limit
# exceeded. Try again in a few minutes." page; nobody else is affected.
c.JupyterHub.active_server_limit = 19                      # a 16 GB machine: (16 - 1.5) / 0.75; set yours
c.JupyterHub.concurrent_spawn_limit = 20                   # a whole class logging in at once queues

# SystemdSpawner runs each student's server in its own systemd unit and *enforces* the memory
# and CPU limits below with cgroups (the default LocalProcessSpawner ignores them).
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/voila/render/00_tour.ipynb"
c.Spawner.args = ["--VoilaConfiguration.template=explainers", "--VoilaConfiguration.strip_sources=True",
                  "--VoilaConfiguration.show_tracebacks=False",
                  # 64 MiB websocket messages (uploads up to 20 MB); no MathJax from a CDN (pages need none)
                  '--ServerApp.tornado_settings={"websocket_max_message_size": 67108864, "mathjax_url": None, "mathjax_config": None}',
                  # a page whose connection was lost without it being left (a laptop put to sleep): its
                  # kernel stops after 15 idle min (an open tab keeps it; leaving a page shuts it down)
                  "--MappingKernelManager.cull_interval=60", "--MappingKernelManager.cull_idle_timeout=900"]
c.Spawner.environment = {"EXPLAINERS_OFFLINE": "1", "EXPLAINERS_DEVICE": "cpu", "OMP_NUM_THREADS": "1",
                         # fewer malloc arenas: less memory held per kernel, nothing slower here
                         "MALLOC_ARENA_MAX": "2"}
try:  # the notebooks and the page template travel inside the installed package
    from explainers.app.serve import NOTEBOOKS_DIR, TEMPLATE_ROOT
    c.Spawner.notebook_dir = str(NOTEBOOKS_DIR)
    c.Spawner.environment["JUPYTER_PATH"] = str(TEMPLATE_ROOT)
except ImportError:  # the hub runs without the package: the servers' machine has it here
    c.Spawner.notebook_dir = "/srv/notebooks"
    c.Spawner.environment["JUPYTER_PATH"] = "/usr/local/lib/python3.11/site-packages/explainers/app/share/jupyter"
# a whole class starting at once on one machine takes longer than the default 30 s
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.Spawner.mem_limit = "2G"
c.Spawner.cpu_limit = 1.0
# stop idle student servers (pip install jupyterhub-idle-culler)
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=1800"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
