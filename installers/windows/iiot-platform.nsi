; IIoT Platform installer for Windows (NSIS 3, Unicode). Compiled by installers/build.py:
;   makensis -DVERSION=0.1.0 -DSERVER_DIR=... -DHMI_DIR=... -DCONFIG=config.example.toml
;            -DICON=assets\icons\iiot-hmi.ico -DOUTFILE=dist\iiot-platform-0.1.0-setup.exe iiot-platform.nsi
; Installs both PyInstaller bundles under Program Files, registers iiot-server as the Windows
; service "iiot-server" (automatic start) through iiot-service.exe (server/winservice.py), puts
; the console in the Start menu, and writes an uninstaller. Data and configuration live in
; %PROGRAMDATA%\iiot and survive an uninstall unless it is run with /PURGE.

Unicode true
!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"
!include "x64.nsh"

!ifndef VERSION
  !error "define VERSION (-DVERSION=0.1.0)"
!endif
!ifndef SERVER_DIR | HMI_DIR | CONFIG | ICON | OUTFILE
  !error "define SERVER_DIR, HMI_DIR, CONFIG, ICON and OUTFILE"
!endif

!define APP "IIoT Platform"
!define SERVICE "iiot-server"
!define REG_KEY "Software\IIoT Platform"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\iiot-platform"
!define MENU "$SMPROGRAMS\${APP}"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\${APP}"
InstallDirRegKey HKLM "${REG_KEY}" "InstallDir"
RequestExecutionLevel admin
SetCompressor /SOLID lzma
ShowInstDetails show
ShowUninstDetails show
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP} installer"
VIAddVersionKey "LegalCopyright" "Apache-2.0"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "${APP} needs 64-bit Windows."
    Abort
  ${EndIf}
  SetRegView 64
  SetShellVarContext all
FunctionEnd

Function un.onInit
  SetRegView 64
  SetShellVarContext all
FunctionEnd

; Runs a command, logs its output, and stores its exit code in $0.
!macro Run CMD
  nsExec::ExecToLog '${CMD}'
  Pop $0
!macroend

Section "Server (Windows service)" SecServer
  ; An upgrade: stop the running service before its files are replaced.
  ${If} ${FileExists} "$INSTDIR\server\iiot-service.exe"
    !insertmacro Run '"$INSTDIR\server\iiot-service.exe" stop'
  ${EndIf}
  SetOutPath "$INSTDIR\server"
  File /r "${SERVER_DIR}\*.*"
  ; %PROGRAMDATA%\iiot: the server's data directory and its configuration, kept on upgrades.
  CreateDirectory "$APPDATA\iiot"
  ${IfNot} ${FileExists} "$APPDATA\iiot\iiot.toml"
    SetOutPath "$APPDATA\iiot"
    File "/oname=iiot.toml" "${CONFIG}"
  ${EndIf}
  !insertmacro Run '"$INSTDIR\server\iiot-server.exe" -c "$APPDATA\iiot\iiot.toml" migrate'
  ${If} $0 != 0
    DetailPrint "iiot-server migrate failed ($0): check $APPDATA\iiot\iiot.toml, then run it again"
  ${EndIf}
  ; install adds --startup auto (server/winservice.py); on an upgrade the service exists: update.
  !insertmacro Run '"$INSTDIR\server\iiot-service.exe" install'
  ${If} $0 != 0
    !insertmacro Run '"$INSTDIR\server\iiot-service.exe" --startup auto update'
  ${EndIf}
  !insertmacro Run '"$INSTDIR\server\iiot-service.exe" start'
  ${If} $0 != 0
    DetailPrint "the ${SERVICE} service did not start ($0): see $APPDATA\iiot\logs\iiot-server.log"
  ${EndIf}
SectionEnd

Section "Operator console" SecHmi
  SetOutPath "$INSTDIR\hmi"
  File /r "${HMI_DIR}\*.*"
  CreateDirectory "${MENU}"
  CreateShortcut "${MENU}\IIoT Operator Console.lnk" "$INSTDIR\hmi\iiot-hmi.exe" "" "$INSTDIR\hmi\iiot-hmi.exe" 0
SectionEnd

Section "-Uninstaller"
  SetOutPath "$INSTDIR"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateDirectory "${MENU}"
  CreateShortcut "${MENU}\Uninstall ${APP}.lnk" "$INSTDIR\uninstall.exe"
  WriteRegStr HKLM "${REG_KEY}" "InstallDir" "$INSTDIR"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINST_KEY}" "Publisher" "IIoT Platform developers"
  WriteRegStr HKLM "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\hmi\iiot-hmi.exe"
  WriteRegStr HKLM "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $1 $2 $3
  WriteRegDWORD HKLM "${UNINST_KEY}" "EstimatedSize" $1
SectionEnd

Section "Uninstall"
  ${If} ${FileExists} "$INSTDIR\server\iiot-service.exe"
    !insertmacro Run '"$INSTDIR\server\iiot-service.exe" stop'
    !insertmacro Run '"$INSTDIR\server\iiot-service.exe" remove'
  ${EndIf}
  RMDir /r "$INSTDIR\server"
  RMDir /r "$INSTDIR\hmi"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  Delete "${MENU}\IIoT Operator Console.lnk"
  Delete "${MENU}\Uninstall ${APP}.lnk"
  RMDir "${MENU}"
  DeleteRegKey HKLM "${UNINST_KEY}"
  DeleteRegKey HKLM "${REG_KEY}"
  ; The plant's data and configuration stay unless asked otherwise: uninstall.exe /S /PURGE
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/PURGE" $R1
  ${IfNot} ${Errors}
    RMDir /r "$APPDATA\iiot"
  ${Else}
    DetailPrint "kept $APPDATA\iiot (data and configuration); uninstall with /PURGE to delete it"
  ${EndIf}
SectionEnd

LangString DESC_SecServer ${LANG_ENGLISH} "iiot-server, registered and started as the Windows service ${SERVICE}."
LangString DESC_SecHmi ${LANG_ENGLISH} "iiot-hmi, the operator console, with a Start-menu shortcut."
!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecServer} $(DESC_SecServer)
  !insertmacro MUI_DESCRIPTION_TEXT ${SecHmi} $(DESC_SecHmi)
!insertmacro MUI_FUNCTION_DESCRIPTION_END
