# A parameterized Nomad batch job: one dispatch = one `packer build` in the qemu-rs container, on any client
# with podman or docker and /dev/kvm. Dispatch a build per template:
#
#   nomad job run deploy/nomad-image-build.nomad.hcl
#   nomad job dispatch -meta template=images/debian-cloud/debian-12-genericcloud.pkr.hcl -meta name=debian-12 image-build
#
# Each dispatched job checks the templates out of GIT_URL, builds, and copies the output directory (image,
# SHA256SUMS, Packer's manifest) to ARTIFACT_DIR/<name>/<job id> on the client (a shared volume in practice).
job "image-build" {
  type = "batch"

  parameterized {
    meta_required = ["template", "name"]
  }

  meta {
    git_url      = "https://github.com/qemu-rs/qemu-rs.git"
    artifact_dir = "/srv/images"
  }

  group "build" {
    task "packer" {
      driver = "docker"

      config {
        image      = "ghcr.io/qemu-rs/qemu-rs:latest"
        entrypoint = ["/bin/sh", "-c"]
        args = [<<-EOT
          set -e
          apt-get update -q >/dev/null && apt-get install -y -q git >/dev/null
          git clone -q --depth 1 "${NOMAD_META_git_url}" /work/src && cd /work/src
          out="/artifacts/${NOMAD_META_name}/${NOMAD_JOB_ID}"
          packer build -color=false -var "output_dir=$out" "${NOMAD_META_template}"
        EOT
        ]
        devices = [{ host_path = "/dev/kvm" }]
        volumes = ["${NOMAD_META_artifact_dir}:/artifacts"]
      }

      resources {
        cpu    = 4000
        memory = 4096
      }
    }
  }
}
