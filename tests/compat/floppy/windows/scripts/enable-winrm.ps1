# Opens WinRM (HTTP, basic auth) for Packer's winrm communicator.
Set-NetConnectionProfile -NetworkCategory Private
winrm quickconfig -q
winrm set winrm/config/service '@{AllowUnencrypted="true"}'
winrm set winrm/config/service/auth '@{Basic="true"}'
netsh advfirewall firewall add rule name="WinRM 5985" protocol=TCP dir=in localport=5985 action=allow
