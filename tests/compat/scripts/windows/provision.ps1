# Windows provisioning run by the powershell provisioner.
Set-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server' -Name fDenyTSConnections -Value 0
Write-Output "provisioned"
